package registration

// Reading the etcd JSON gateway's answers: results, errors in any status
// (a 200 included), and int64s written as strings. See etcdgateway.go for
// the conventions.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// gatewayAnswer holds the fields every answer may have. A stream's
// messages come one after the other; the registrar's streams have one.
type gatewayAnswer struct {
	Result  json.RawMessage `json:"result"` // a stream message's payload
	Error   json.RawMessage `json:"error"`  // a string, or an object on a stream
	Code    int             `json:"code"`
	Message string          `json:"message"`
}

// decodeGatewayAnswer reads the first JSON message of data into out, or
// returns the error it reports: an *etcdError when etcd said no, whatever
// the HTTP status. status and code are the HTTP status's.
func decodeGatewayAnswer(route, status string, code int, data []byte, out any, stream bool) error {
	var msg json.RawMessage
	var a gatewayAnswer
	err := json.NewDecoder(bytes.NewReader(data)).Decode(&msg)
	if err == nil {
		err = json.Unmarshal(msg, &a)
	}
	if err == nil {
		if ee := a.etcdError(); ee != nil {
			return ee
		}
	}
	switch {
	case code != http.StatusOK:
		// Not etcd's words: a proxy, or not an etcd (404 for /v3/ is an
		// etcd older than 3.4).
		return fmt.Errorf("%s: HTTP %s: %q", route, status, snippet(data))
	case errors.Is(err, io.EOF):
		return errors.New("empty answer")
	case err != nil:
		return fmt.Errorf("answer is not a JSON object: %w: %q", err, snippet(data))
	}
	if stream {
		if len(a.Result) == 0 || string(a.Result) == "null" {
			return nil // out stays zero: the caller's "nothing"
		}
		msg = a.Result
	}
	if err := json.Unmarshal(msg, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// etcdError is the error in a, nil if it has none.
func (a *gatewayAnswer) etcdError() *etcdError {
	e := &etcdError{Code: a.Code, Message: a.Message}
	if raw := bytes.TrimSpace(a.Error); len(raw) > 0 && string(raw) != "null" && string(raw) != `""` {
		var text string
		var obj struct {
			Code     int    `json:"code"`      // grpc-gateway v2
			GRPCCode int    `json:"grpc_code"` // grpc-gateway v1
			Message  string `json:"message"`
		}
		switch {
		case json.Unmarshal(raw, &text) == nil:
			if e.Message == "" {
				e.Message = text
			}
		case json.Unmarshal(raw, &obj) == nil:
			e.Code, e.Message = max(obj.Code, obj.GRPCCode), obj.Message
		default:
			e.Message = string(raw)
		}
		if e.Message == "" {
			e.Message = "unspecified error " + string(raw)
		}
		return e
	}
	if a.Code != 0 {
		if e.Message == "" {
			e.Message = "unspecified error"
		}
		return e
	}
	return nil
}

// snippet is the start of a body that is not the gateway's JSON, for an
// error message.
func snippet(data []byte) string {
	const n = 200
	s := strings.TrimSpace(string(data))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// etcdError is etcd refusing a request, as opposed to an endpoint that did
// not answer.
type etcdError struct {
	Code    int    // gRPC status code
	Message string // etcd's, e.g. "etcdserver: requested lease not found"
}

func (e *etcdError) Error() string {
	return fmt.Sprintf("%s (gRPC code %d)", e.Message, e.Code)
}

// endpointErrors are a request's failures at each endpoint tried, each
// wrapped with the endpoint's name.
type endpointErrors []error

func (e endpointErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e endpointErrors) Unwrap() []error { return e }

// gwInt64 is an int64 as the gateway writes it, a JSON string: lease IDs
// go beyond the 2^53 a JSON number keeps exact. A bare number is read too.
type gwInt64 int64

func (n gwInt64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(n), 10) + `"`), nil
}

func (n *gwInt64) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("int64 %s: %w", b, err)
	}
	*n = gwInt64(v)
	return nil
}
