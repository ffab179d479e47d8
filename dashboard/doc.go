// Package dashboard serves the web page at /ui/: the instances, their polls
// and their deliveries, with "Poll now" and "Redeliver". It is a view of the
// REST API: every figure it shows and every action it takes is a request to
// the API handler, made in-process with the signed-in user's credentials,
// so it can show and do nothing the API would not.
//
// Sign-in takes the User and Organization secrets, or an instance's id and
// Element token (that instance alone). A session is a random cookie
// (HttpOnly, SameSite=Strict) naming a record in the KV bucket
// POLLHOOK_UI_SESSIONS, where the credentials are kept sealed under
// --secret-key; every form carries the session's CSRF token. Pages are
// rendered on the server, so they read without JavaScript; with it, the
// live parts refresh every few seconds.
package dashboard
