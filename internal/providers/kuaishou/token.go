package kuaishou

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/paystatus/orderstatus/internal/providers"
)

// tokenPath is the access-token endpoint, below base_url.
const tokenPath = "/oauth2/access_token"

// tokenSource keeps one app's access token. A token is used until 80% of its life has passed;
// then a new one is fetched in the background while callers go on with the old one (a new
// token leaves the old one valid), so no caller waits for a refresh. Only a caller with no
// valid token at all waits, and the pipeline makes that wait before it takes a rate slot
// (Client.Prepare), so a slow token endpoint never bunches calls into one second. However many
// callers there are, one fetch runs at a time.
type tokenSource struct {
	client  *http.Client
	baseURL string
	appID   string
	secret  string
	now     func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	expiresAt time.Time
	flight    singleflight.Group
}

func (t *tokenSource) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	token, refreshAt, expiresAt := t.token, t.refreshAt, t.expiresAt
	t.mu.Unlock()
	now := t.now()
	if token != "" && now.Before(refreshAt) {
		return token, nil
	}
	// The fetch runs on its own context, so that one caller giving up does not fail the
	// others waiting on the same fetch; each caller still stops waiting when its ctx ends.
	ch := t.flight.DoChan("token", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.client.Timeout+time.Second)
		defer cancel()
		return t.fetch(fctx)
	})
	if token != "" && now.Before(expiresAt) {
		return token, nil // refreshing ahead: the old token serves until the new one is in
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			if token != "" && now.Before(expiresAt) {
				return token, nil // the old token is still good
			}
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", providers.TransportError(Name, ctx.Err())
	}
}

// invalidate forgets token if it is still the current one, after the provider refused it.
func (t *tokenSource) invalidate(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == token {
		t.token = ""
	}
}

type tokenAnswer struct {
	Result      json.Number `json:"result"`
	AccessToken string      `json:"access_token"`
	ExpiresIn   json.Number `json:"expires_in"`
	ErrorMsg    string      `json:"error_msg"`
}

func (t *tokenSource) fetch(ctx context.Context) (string, error) {
	t.mu.Lock()
	if t.token != "" && t.now().Before(t.refreshAt) { // fetched while this caller queued
		tok := t.token
		t.mu.Unlock()
		return tok, nil
	}
	t.mu.Unlock()

	form := url.Values{"app_id": {t.appID}, "app_secret": {t.secret}, "grant_type": {"client_credentials"}}
	started := t.now()
	body, err := providers.Post(ctx, t.client, Name, t.baseURL+tokenPath, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	token, life, err := parseTokenAnswer(body)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.token = token
	t.expiresAt = started.Add(life)
	t.refreshAt = started.Add(life * 8 / 10)
	t.mu.Unlock()
	return token, nil
}

// parseTokenAnswer reads the access-token answer. Every failure is a classified error.
func parseTokenAnswer(body []byte) (token string, life time.Duration, err error) {
	var ans tokenAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", 0, providers.Malformed(Name, "access token answer is not JSON: %v", err)
	}
	if ans.Result.String() != "1" {
		code, _ := ans.Result.Int64()
		return "", 0, &providers.Error{Provider: Name, Class: providers.Retryable, Code: ans.Result.String(),
			Message: "access token refused: " + ans.ErrorMsg + codeHint(code)}
	}
	secs, err := ans.ExpiresIn.Int64()
	if ans.AccessToken == "" || err != nil || secs <= 0 || secs > 365*24*3600 {
		return "", 0, providers.Malformed(Name, "access token answer lacks access_token or a sane expires_in")
	}
	return ans.AccessToken, time.Duration(secs) * time.Second, nil
}

func codeHint(code int64) string {
	if code == CodeAuthFailed {
		return " (check app_id and app_secret)"
	}
	return ""
}
