// Package api holds cardvault's HTTP contract: the OpenAPI 3.1 document
// the server serves at /openapi.yaml and the tests hold it to.
package api

import _ "embed"

// OpenAPI is openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
