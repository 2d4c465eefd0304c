package sandbox

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

// The sandbox states Kudian's wire rules again: it must not take them from the client.
func TestDoesNotImportTheClient(t *testing.T) {
	providertest.NoImport(t, "github.com/paystatus/orderstatus/internal/providers/kudian")
}

// Vectors computed apart from this code (Python's hashlib) by the rules CONTRACT.md section 6
// assumes.
func TestSignVectors(t *testing.T) {
	fields := map[string]string{"open_app_id": "kd100020200220", "timestamp": "1602558156", "sign_type": "MD5",
		"token": "UT89A6C01D2A704608808F4896369FE009", "biz_content": `{"out_trade_no":"300230547599788000","is_fresh":false}`, "sign": "ignored", "empty": ""}
	if got := sign(fields, "kd-demo-secret"); got != "acd16ad95a0e5107593faa6d18ef23c6" {
		t.Errorf("sign = %s", got)
	}
	if got := answerSign(`{"code":0,"data":{"status":"PAYED_SUCC"},"msg":"success"}`, "kd-demo-secret"); got != "26ced40619c60cdfd2065943f39e266d" {
		t.Errorf("answer sign = %s", got)
	}
}

func md5hex(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }

// query sends the document's request for pay_no with a current timestamp, signed as written out
// here by hand (fields sorted, k=v joined with &, the secret appended), and returns the
// envelope and its result after checking the answer's signature.
func query(t *testing.T, base, payNo string, badSign bool) (envelope, result map[string]any) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	biz := `{"pay_no":"` + payNo + `","is_fresh":false}`
	sig := md5hex("biz_content=" + biz + "&open_app_id=" + DemoAppID + "&sign_type=MD5&timestamp=" + ts + "&token=" + DemoToken + DemoAppSecret)
	if badSign {
		sig = md5hex(sig)
	}
	body, _ := json.Marshal(map[string]any{"open_app_id": DemoAppID, "timestamp": json.Number(ts), "sign_type": "MD5",
		"token": DemoToken, "biz_content": biz, "sign": sig})
	resp, err := http.Post(base+"/api/v2/cashier/query", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &envelope) != nil {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
	}
	res, _ := envelope["result"].(string)
	if envelope["sign"] != md5hex(res+DemoAppSecret) {
		t.Fatalf("answer signature does not verify: %s", raw)
	}
	if err := json.Unmarshal([]byte(res), &result); err != nil {
		t.Fatalf("result is not an object: %s", raw)
	}
	return envelope, result
}

func serve(t *testing.T) (*Sandbox, string) {
	t.Helper()
	s := New(0)
	LoadDemo(s)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// The sandbox accepts a request signed by the assumed rule, refuses one signed otherwise, and
// signs every answer.
func TestRequestSignature(t *testing.T) {
	_, base := serve(t)
	for bad, wantCode := range map[bool]float64{false: codeSuccess, true: codeSignatureInvalid} {
		_, res := query(t, base, DemoPayNo, bad)
		if res["code"] != wantCode {
			t.Errorf("bad sign %v: %v", bad, res)
		}
	}
}

// Answers have the shape of the document's example (both tabs, testdata), before and after
// the payment succeeds.
func TestAnswersHaveTheDocumentedShape(t *testing.T) {
	read := func(name string) map[string]any {
		b, err := os.ReadFile("../testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	rawTab, resultTab := read("cashier_query_raw.json"), read("cashier_query_result.json")
	// The example's data, both tabs together (the raw tab has order_no and m_discount_fee).
	var rawResult map[string]any
	if err := json.Unmarshal([]byte(rawTab["result"].(string)), &rawResult); err != nil {
		t.Fatal(err)
	}
	data := resultTab["data"].(map[string]any)
	for k, v := range rawResult["data"].(map[string]any) {
		if _, ok := data[k]; !ok {
			data[k] = v
		}
	}
	// Named by the document's tables, absent from its example.
	tableOnly := []string{"refunded_fee", "can_refund", "user_no", "m_discount_fee"}
	// Returned only once status is PAYED_SUCC, says the document.
	untilPaid := []string{"fee", "origin_fee", "received_fee", "user_pay_fee", "discount_info", "pay_time", "member_name", "member_phone"}

	s, base := serve(t)
	envelope, res := query(t, base, DemoPayNo, false)
	providertest.SameShape(t, "envelope", rawTab, envelope, nil, nil)
	providertest.SameShape(t, "paying", resultTab, res, untilPaid, tableOnly)
	s.SetStatus(DemoPayNo, "PAYED_SUCC")
	_, res = query(t, base, DemoPayNo, false)
	providertest.SameShape(t, "paid", resultTab, res, nil, tableOnly)
	payTime, _ := res["data"].(map[string]any)["pay_time"].(string)
	if _, err := time.Parse("2006-01-02 15:04:05", payTime); err != nil {
		if _, err := time.Parse("2006-01-02 15:04", payTime); err != nil { // as the raw tab has it
			t.Errorf("pay_time %q is in neither documented form", payTime)
		}
	}
}
