package kuaishou

import (
	"context"
	"encoding/json"
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
// callers there are, one fetch runs at a time. A token whose fetch was under way when the
// provider refused the current one is not installed (see fetch).
type tokenSource struct {
	client  *providers.HTTPClient
	baseURL string
	appID   string
	secret  string
	now     func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	expiresAt time.Time
	// gen counts the refusals that dropped the current token (invalidate): a fetch that
	// started before one installs nothing (see fetch).
	gen    uint64
	flight singleflight.Group
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
		return t.fetch(context.WithoutCancel(ctx))
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

// invalidate forgets token if it is still the current one, after the provider refused it. A
// fetch under way then installs nothing it was issued before this refusal (see fetch).
func (t *tokenSource) invalidate(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == token {
		t.token = ""
		t.gen++
	}
}

type tokenAnswer struct {
	Result      json.Number `json:"result"`
	AccessToken string      `json:"access_token"`
	ExpiresIn   json.Number `json:"expires_in"`
	ErrorMsg    string      `json:"error_msg"`
}

// fetchTries bounds the fetches one flight makes when refusals keep landing during them.
const fetchTries = 2

// fetch gets a new token from the provider and installs it, unless the current token was
// refused (invalidate) while the fetch was under way: the token it got was issued before that
// refusal, and whatever made the provider refuse one token (the tokens expired or were
// revoked) may hold for it too: installed, it would be used and refused in turn, and, as the
// refusal that dropped the old token is already handled, nothing would drop it but the next
// refusal. Such a fetch is made again, once, so the callers waiting on the flight (the
// refusing query's next try among them) get a token issued after the refusal, rather than an
// error that costs each of them a retry. (A second refusal cannot land during that fetch:
// only a flight installs a token, so after the first there is none to drop. Should one, the
// flight fails with a retryable error and installs nothing, rather than loop.)
func (t *tokenSource) fetch(ctx context.Context) (string, error) {
	for try := 1; ; try++ {
		t.mu.Lock()
		if t.token != "" && t.now().Before(t.refreshAt) { // fetched while this caller queued
			tok := t.token
			t.mu.Unlock()
			return tok, nil
		}
		gen := t.gen
		t.mu.Unlock()

		token, life, started, err := t.request(ctx)
		if err != nil {
			return "", err
		}
		t.mu.Lock()
		if t.gen != gen { // a refusal landed while this fetch was under way
			t.mu.Unlock()
			if try < fetchTries {
				continue
			}
			return "", &providers.Error{Provider: Name, Class: providers.Retryable,
				Message: "access tokens refused while a new one was being fetched"}
		}
		t.token = token
		t.expiresAt = started.Add(life)
		t.refreshAt = started.Add(life * 8 / 10)
		t.mu.Unlock()
		return token, nil
	}
}

// request asks the provider for a token, on ctx bounded by the client's timeout (and a second
// more for the body); started is when it was asked, from which its life counts.
func (t *tokenSource) request(ctx context.Context) (token string, life time.Duration, started time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, t.client.Timeout()+time.Second)
	defer cancel()
	form := url.Values{"app_id": {t.appID}, "app_secret": {t.secret}, "grant_type": {"client_credentials"}}
	started = t.now()
	body, err := providers.Post(ctx, t.client, Name, t.baseURL+tokenPath, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return "", 0, started, err
	}
	token, life, err = parseTokenAnswer(body)
	return token, life, started, err
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
