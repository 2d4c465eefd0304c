package providers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			_, _ = io.WriteString(w, r.Method+" "+r.Header.Get("Content-Type")+" "+string(body))
		case "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/broken":
			w.WriteHeader(http.StatusBadGateway)
		case "/big":
			_, _ = w.Write(make([]byte, MaxAnswerSize+10))
		}
	}))
	defer srv.Close()
	client := NewHTTPClient(2 * time.Second)
	ctx := context.Background()

	raw, err := Post(ctx, client, "p", srv.URL+"/echo?token=secret", "application/x-www-form-urlencoded", []byte("a=1"))
	if err != nil || string(raw) != "POST application/x-www-form-urlencoded a=1" {
		t.Fatalf("%q %v", raw, err)
	}
	raw, err = PostJSON(ctx, client, "p", srv.URL+"/echo", []byte(`{}`))
	if err != nil || string(raw) != "POST application/json {}" {
		t.Fatalf("%q %v", raw, err)
	}
	if raw, err = Post(ctx, client, "p", srv.URL+"/big", "text/plain", nil); err != nil || len(raw) != MaxAnswerSize {
		t.Fatalf("answer of %d bytes read as %d (%v)", MaxAnswerSize+10, len(raw), err)
	}

	for _, tc := range []struct {
		url   string
		class Class
	}{
		{srv.URL + "/busy", RateLimited},
		{srv.URL + "/broken", Retryable},
		{"http://127.0.0.1:1/refused?access_token=ChFvSecret", Retryable},
		{"http://[::1/bad?access_token=ChFvSecret", Permanent},
	} {
		_, err := Post(ctx, client, "p", tc.url, "application/json", nil)
		if Classify(err) != tc.class || err == nil {
			t.Errorf("%s: %v, want %s", tc.url, err, tc.class)
		}
		if err != nil && strings.Contains(err.Error(), "ChFvSecret") {
			t.Errorf("%s: the query string reached the error: %v", tc.url, err)
		}
	}
}
