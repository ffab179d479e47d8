// Package api owns the REST plumbing every handler shares: the Open Connectors
// error body, request ids, JSON bodies with their size and type limits, the
// Authorization header, and a router that serves each route both at "/" and
// under "/elements/api-v2/" with JSON 404 and 405 answers.
package api
