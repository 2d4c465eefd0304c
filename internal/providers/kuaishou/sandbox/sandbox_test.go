package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

// The sandbox states Kuaishou's wire rules again: it must not take them from the client.
func TestDoesNotImportTheClient(t *testing.T) {
	providertest.NoImport(t, "github.com/paystatus/orderstatus/internal/providers/kuaishou")
}

// serve starts the sandbox with its demo data and returns its URL and an access token for the
// demo app, fetched as the document's getAccessToken says.
func serve(t *testing.T) (string, string) {
	t.Helper()
	s := New(0)
	LoadDemo(s)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	form := url.Values{"app_id": {DemoAppID}, "app_secret": {DemoAppSecret}, "grant_type": {"client_credentials"}}
	ans := post(t, srv.URL+"/oauth2/access_token", "application/x-www-form-urlencoded", form.Encode())
	token, _ := ans["access_token"].(string)
	if ans["result"] != 1.0 || token == "" {
		t.Fatalf("token answer %v", ans)
	}
	providertest.SameShape(t, "token answer", map[string]any{"result": 1.0, "access_token": "t", "expires_in": 172800.0}, ans, nil, []string{"token_type"})
	return srv.URL, token
}

func post(t *testing.T, u, contentType, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(u, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &ans) != nil {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
	}
	return ans
}

// The contract's signing vector is the document's own request example (section 2.4): the
// sandbox accepts it as sent, and refuses it with any other sign.
func TestContractSignVector(t *testing.T) {
	if got := sign(map[string]string{"app_id": "ks707065143182458884", "out_order_no": "1711619867139contractDemo",
		"access_token": "not signed", "sign": "not signed", "empty": ""}, "9VfzaT-7Jf1bBHv-veFZfg"); got != "360a9add284bb4e2050673132418a356" {
		t.Fatalf("sign = %s", got)
	}
	base, token := serve(t)
	u := base + "/openapi/mp/developer/epay/query_order?" + url.Values{"app_id": {"ks707065143182458884"}, "access_token": {token}}.Encode()
	for sig, wantResult := range map[string]float64{"360a9add284bb4e2050673132418a356": 1, "360a9add284bb4e2050673132418a357": codeSignatureInvalid} {
		ans := post(t, u, "application/json", `{"out_order_no":"1711619867139contractDemo","sign":"`+sig+`"}`)
		if ans["result"] != wantResult {
			t.Errorf("sign %s: %v", sig, ans)
		}
	}
}

// Every answer has the shape of the document's example answer of its endpoint (testdata).
func TestAnswersHaveTheDocumentedShape(t *testing.T) {
	base, token := serve(t)
	for _, tc := range []struct {
		path, numField, no, example, info string
		mayLack, tableOnly                []string
	}{
		{"/openapi/mp/developer/epay/query_order", "out_order_no", DemoOrderNo, "query_order.json", "payment_info", nil, []string{"developer_promotion_amount"}},
		{"/openapi/mp/developer/epay/query_order", "out_order_no", "1637808229728demo", "query_order.json", "payment_info",
			[]string{"enable_promotion", "promotion_amount", "open_id", "order_status"}, nil}, // an order with no promotion
		{"/openapi/mp/developer/epay/query_settle", "out_settle_no", DemoOrderNo, "query_settle.json", "settle_info", nil, nil},
		{"/openapi/mp/developer/epay/query_refund", "out_refund_no", "1660811124083refund", "query_refund.json", "refund_info",
			[]string{"ks_refund_fail_reason"}, nil}, // a refund that did not fail
	} {
		raw, err := os.ReadFile("../testdata/" + tc.example)
		if err != nil {
			t.Fatal(err)
		}
		var example map[string]any
		if err := json.Unmarshal(raw, &example); err != nil {
			t.Fatal(err)
		}
		u := base + tc.path + "?" + url.Values{"app_id": {DemoAppID}, "access_token": {token}}.Encode()
		body, _ := json.Marshal(map[string]string{tc.numField: tc.no, "sign": sign(map[string]string{"app_id": DemoAppID, tc.numField: tc.no}, DemoAppSecret)})
		ans := post(t, u, "application/json", string(body))
		// The contract lets a record arrive as a JSON string holding the object.
		if s, ok := ans[tc.info].(string); ok {
			var record map[string]any
			if err := json.Unmarshal([]byte(s), &record); err != nil {
				t.Fatalf("%s %s: %s is not an object in a string: %v", tc.path, tc.no, tc.info, err)
			}
			ans[tc.info] = record
		}
		providertest.SameShape(t, tc.path+" "+tc.no, example, ans, tc.mayLack, tc.tableOnly)
	}
}
