package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cardvault/cardvault/api"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The end-to-end tests reach the server through contractProxy, which holds
// every exchange to api/openapi.yaml with kin-openapi's validator: the test
// client's, openssl's in the guide's shell flow, jwcrypto's and jose's. A
// response the document does not describe (a status, a header, a body)
// fails the test. A request outside the document's rules must be answered
// 4xx: the server refuses what the document refuses.
var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error

	requests, refused, responses atomic.Int64
	operations                   sync.Map // operation id → true
}

func loadContract() {
	loader := openapi3.NewLoader()
	contract.doc, contract.err = loader.LoadFromData(api.OpenAPI)
	if contract.err == nil {
		contract.err = contract.doc.Validate(context.Background())
	}
	if contract.err == nil {
		contract.router, contract.err = gorillamux.NewRouter(contract.doc)
	}
}

// contractProxy serves the test side of a server at base, checking every
// exchange against the document.
func contractProxy(t *testing.T, base string) string {
	t.Helper()
	contract.once.Do(loadContract)
	if contract.err != nil {
		t.Fatalf("api/openapi.yaml: %v", contract.err)
	}
	target, _ := url.Parse(base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		checkExchange(t, r, body, rec.Result(), rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// checkExchange validates one request and its response.
func checkExchange(t *testing.T, r *http.Request, body []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(body))
	// The server accepts a trailing slash on every path (the guide writes
	// card-orders/); the document lists paths without it.
	if p := req.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		req.URL.Path = strings.TrimSuffix(p, "/")
	}
	route, params, err := contract.router.FindRoute(req)
	if err != nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("contract: %s %s answered %d, but api/openapi.yaml has no such operation: %v", r.Method, r.URL.Path, resp.StatusCode, err)
		}
		return
	}
	contract.operations.Store(route.Operation.OperationID, true)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	contract.requests.Add(1)
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		contract.refused.Add(1)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("contract: api/openapi.yaml refuses %s %s (%v), but the server answered %d", r.Method, r.URL.Path, err, resp.StatusCode)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("contract: %s %s answered %d, which api/openapi.yaml does not describe: %v\n%.300s", r.Method, r.URL.Path, resp.StatusCode, err, respBody)
	}
	contract.responses.Add(1)
}

// contractReport is the validator's tally, printed when the package's
// tests end.
func contractReport() string {
	if contract.doc == nil {
		return ""
	}
	var all, seen []string
	for _, item := range contract.doc.Paths.Map() {
		for _, op := range item.Operations() {
			all = append(all, op.OperationID)
			if _, ok := contract.operations.Load(op.OperationID); ok {
				seen = append(seen, op.OperationID)
			}
		}
	}
	sort.Strings(all)
	var missed []string
	for _, id := range all {
		if _, ok := contract.operations.Load(id); !ok {
			missed = append(missed, id)
		}
	}
	return fmt.Sprintf("openapi contract: %d requests checked (%d outside the document's rules, each answered 4xx), %d responses validated; %d of %d operations exercised (not: %s)",
		contract.requests.Load(), contract.refused.Load(), contract.responses.Load(), len(seen), len(all), strings.Join(missed, ", "))
}
