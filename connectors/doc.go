// Package connectors owns connector definitions: data files, one YAML file
// per connector, that give an upstream's base URLs, auth scheme, secret and
// required configuration keys, default id field, rate limit, pagination and
// default resources.
//
// The built-in definitions live in definitions/ and are embedded in the
// binary; Load adds (or replaces, whole) definitions from a user directory.
// The file format is documented in docs/connectors.md and on Definition.
// Every file is validated at load, and errors name the file and the field.
//
// Beyond the data, a Definition resolves an instance's configuration:
// ResolveBaseURL (base.url wins over environment), ResolveAuth
// (configuration overrides such as oauth.token.url, or generic's auth.type),
// ResolvePagination and CheckConfig (every missing or bad key, for a 400).
// The package does no I/O beyond reading definition files and imports no
// other pollhook package; token sources and request signing belong to the
// pollers that use these definitions.
package connectors
