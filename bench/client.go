package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Client is one API caller: the base URLs of one or more replicas, a
// bearer token and a keep-alive connection pool sized for the bench's
// clients.
type Client struct {
	bases []string
	next  atomic.Uint64
	token string
	http  *http.Client
}

// NewClient returns a client of the service at bases (http://host:port
// each). With several, requests take them in turn, as a round-robin load
// balancer in front of replicas would.
func NewClient(bases []string, token string, clients int) *Client {
	tr := &http.Transport{
		MaxIdleConns:        clients * len(bases),
		MaxIdleConnsPerHost: clients,
		IdleConnTimeout:     time.Minute,
	}
	return &Client{bases: bases, token: token, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// base is the replica the next request goes to.
func (c *Client) base() string {
	if len(c.bases) == 1 {
		return c.bases[0]
	}
	return c.bases[(c.next.Add(1)-1)%uint64(len(c.bases))]
}

// Close drops the idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Answer is a response's status and body.
type Answer struct {
	Status int
	Body   []byte
}

// Do sends one request with an optional Idempotency-Key.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, idemKey string) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base()+path, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Answer{Status: resp.StatusCode, Body: b}, err
}

// Expect sends a request and turns an unexpected status into an error
// that names the request, the status and an error answer's body. Only an
// error body is quoted: a success may carry card data, an error never does.
func (c *Client) Expect(ctx context.Context, method, path string, body []byte, idemKey, what string, want int) (Answer, error) {
	a, err := c.Do(ctx, method, path, body, idemKey)
	if err != nil {
		return a, fmt.Errorf("%s: %w", what, err)
	}
	if a.Status != want {
		if a.Status >= 400 {
			return a, fmt.Errorf("%s: status %d, want %d: %.200s", what, a.Status, want, a.Body)
		}
		return a, fmt.Errorf("%s: status %d, want %d", what, a.Status, want)
	}
	return a, nil
}
