package kudian

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

// withData is a successful inner result carrying data (JSON text).
func withData(data string) string { return `{"code":0,"msg":"success","data":` + data + `}` }

// signedAsRead is signed, but the signature is made over the result as the answer's reader
// sees it: invalid UTF-8 in it, which JSON carries as the replacement character, as that.
func signedAsRead(result string) []byte {
	b, _ := json.Marshal(result)
	var read string
	_ = json.Unmarshal(b, &read)
	return []byte(`{"result":` + string(b) + `,"sign":"` + AnswerSign(read, secret) + `"}`)
}

// nested is a value nested depth arrays deep.
func nested(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

// goldenResults are inner results (signed by the test) as the documents, the tests and hostile
// providers give them.
func goldenResults(t *testing.T) [][2]string {
	var results [][2]string
	add := func(name, result string) { results = append(results, [2]string{name, result}) }
	var raw struct{ Result string }
	b, err := os.ReadFile("testdata/cashier_query_raw.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	add("document raw tab", raw.Result)
	if b, err = os.ReadFile("testdata/cashier_query_result.json"); err != nil {
		t.Fatal(err)
	}
	add("document result tab", string(b))
	add("document", docResult)

	// Codes and the inner result around the data.
	for _, code := range []string{"40000", "40001", "40002", "40004", "40029", "50000", "12345", "-1", `"0"`, `"40004"`, "0.0", "1e0",
		`"x"`, "null", "true", "[]", "{}", "99999999999999999999"} {
		add("code "+code, `{"code":`+code+`,"msg":"m","data":{"status":"PAYED_SUCC","pay_no":"p1"}}`)
	}
	add("no code", `{"msg":"m","data":{"status":"PAYED_SUCC"}}`)
	add("msg number", `{"code":40004,"msg":5}`)
	add("msg invalid UTF-8", "{\"code\":40004,\"msg\":\"bad \xff\xfe text\"}")
	for name, result := range map[string]string{
		"empty": ``, "space": ` `, "null": `null`, "array": `[1]`, "number": `1`, "string": `"x"`, "text": `oops`,
		"truncated": `{"code":0,"data":{"status":"PAYED_SUCC"`, "unquoted key": `{code:0}`, "trailing comma": `{"code":0,}`,
	} {
		add("result "+name, result)
	}
	add("data after the result", withData(`{"status":"PAYED_SUCC"}`)+` garbage`)
	add("second result after the result", withData(`{"status":"PAYED_SUCC"}`)+`{"code":40004}`)
	add("space around the result", "\n\t "+withData(`{"status":"PAYED_SUCC"}`)+"\n")
	add("result keys in capitals", `{"CODE":0,"Data":{"status":"PAYED_SUCC","fee":5}}`)
	add("result duplicate data", `{"code":0,"data":{"status":"PAYED_FAIL","fee":1,"a":1},"data":{"status":"PAYED_SUCC","b":2}}`)
	add("result duplicate code", `{"code":40004,"code":0,"data":{"status":"PAYED_SUCC"}}`)
	add("error with data not an object", `{"code":40004,"msg":"m","data":[1]}`)

	// The data record itself.
	for name, data := range map[string]string{
		"null": `null`, "number": `12`, "true": `true`, "array": `[{"status":"PAYED_SUCC"}]`, "empty object": `{}`,
		"string": `"{\"status\":\"PAYED_SUCC\"}"`, "string null": `"null"`,
		"duplicate fields":   `{"status":"PAYED_FAIL","status":"PAYED_SUCC","fee":1,"fee":2,"x":{"a":1},"x":{"b":2},"y":[1],"y":null}`,
		"keys in capitals":   `{"STATUS":"PAYED_SUCC","Fee":5}`,
		"keys in both cases": `{"status":"PAYED_SUCC","STATUS":"PAYED_FAIL","fee":5,"FEE":6,"Member_Phone":"1"}`,
		"empty key":          `{"status":"PAYED_SUCC","":1}`,
		"invalid UTF-8":      "{\"status\":\"PAYED\xff_SUCC\",\"k\xfe\":\"v\xc3\",\"pay_no\":\"\xed\xa0\x80\"}",
		"invalid UTF-8 keys": "{\"status\":\"PAYED_SUCC\",\"a\xff\":1,\"a\xfe\":2}",
		"escapes":            `{"status":"\u0050AYED_SUCC","note":"\u00e9\ud800\u0000\t\"\\\/","\u006b":"\ud83d\ude00"}`,
		"numbers":            `{"status":"PAYED_SUCC","i":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"over":9223372036854775808,"under":-9223372036854775809,"big":99999999999999999999,"huge":1e400,"tiny":1e-400,"neg0":-0,"f":0.5,"whole float":2.0,"exp":1E2,"small":1e-7,"n":[1,-1,0.25,12345678901234567890123,{"d":9007199254740993}]}`,
		"nested":             `{"status":"PAYED_SUCC","deep":` + nested(500) + `,"obj":{"a":{"b":{"c":[{"d":1.5}]}}}}`,
		"too deep":           `{"status":"PAYED_SUCC","deep":` + nested(10001) + `}`,
		"many fields":        `{"status":"PAYED_SUCC"` + strings.Repeat(`,"field":"value"`, 2000) + `,"last":1}`,
		"all types":          `{"status":"PAYED_SUCC","s":"x","t":true,"f":false,"z":null,"o":{},"a":[]}`,
		"pii":                `{"status":"PAYED_SUCC","member_phone":"18826490000","member_name":"Janus","Member_Name":"x"}`,
		"pii null":           `{"status":"PAYED_SUCC","member_phone":null,"member_name":{"a":1}}`,
	} {
		add("data "+name, withData(data))
	}
	add("data absent", `{"code":0,"msg":"success"}`)

	// The fields the result is made of.
	for _, v := range []string{`"PAYED_SUCC"`, `"PAYING"`, `"UNKNOW"`, `"CANCEL"`, `"PAYED_REVERSAL"`, `"NEW_ONE"`, `""`, `null`, `5`, `-1.5e3`, `true`, `{}`, `["PAYED_SUCC"]`, `"payed_succ"`} {
		add("status "+v, withData(`{"status":`+v+`,"fee":1}`))
	}
	for _, v := range []string{`100`, `"100"`, `100.0`, `0`, `-5`, `9007199254740991`, `9007199254740993`, `9223372036854775807`, `9223372036854775808`,
		`1e3`, `"1e3"`, `1.5`, `"1.5"`, `1e400`, `"12元"`, `" 5"`, `""`, `null`, `true`, `{}`, `[]`, `-0`} {
		add("fee "+v, withData(`{"status":"PAYED_SUCC","fee":`+v+`}`))
	}
	for _, v := range []string{`"2020-10-13 11:00:00"`, `"2020-10-13 11:00"`, `"2020-10-13 1:00"`, `"2020-10-13 11:00:00.5"`, `"2020-02-30 11:00"`,
		`"2020-10-13T11:00:00Z"`, `"soon"`, `""`, `null`, `1602558000`, `true`, `{}`} {
		add("pay_time "+v, withData(`{"status":"PAYED_SUCC","pay_time":`+v+`}`))
	}
	for _, v := range []string{`"WXPAY"`, `"ALIPAY"`, `"BALANCE"`, `"UNIONPAY"`, `"wxpay"`, `""`, `null`, `1`, `true`, `{}`} {
		add("payment_type "+v, withData(`{"status":"PAYED_SUCC","payment_type":`+v+`}`))
	}
	for _, v := range []string{`"600230547601422048"`, `600230547601422048`, `121112500031787702250`, `1.5e3`, `""`, `null`, `false`, `[]`} {
		add("pay_no "+v, withData(`{"status":"PAYED_SUCC","pay_no":`+v+`}`))
		add("out_trade_no "+v, withData(`{"status":"PAYED_SUCC","out_trade_no":`+v+`}`))
		add("order_no "+v, withData(`{"status":"PAYED_SUCC","order_no":`+v+`}`))
		add("out_trade_no and order_no "+v, withData(`{"status":"PAYED_SUCC","order_no":"o-1","out_trade_no":`+v+`}`))
	}
	return results
}

// goldenEnvelopes are whole answers (the envelope around the signed result).
func goldenEnvelopes(t *testing.T) [][2]string {
	b, err := os.ReadFile("testdata/cashier_query_raw.json")
	if err != nil {
		t.Fatal(err)
	}
	good := withData(`{"status":"PAYED_SUCC","pay_no":"p1"}`)
	sign := AnswerSign(good, secret)
	quotedGood, _ := json.Marshal(good)
	bad := "{\"code\":0,\"data\":{\"status\":\"PAYED\xff_SUCC\"}}"
	return [][2]string{
		{"document raw tab as printed", string(b)},
		{"signed", string(signed(good))},
		{"wrong signature", `{"result":` + string(quotedGood) + `,"sign":"0000"}`},
		{"signature in capitals", `{"result":` + string(quotedGood) + `,"sign":"` + strings.ToUpper(sign) + `"}`},
		{"no signature", `{"result":` + string(quotedGood) + `}`},
		{"signature number", `{"result":` + string(quotedGood) + `,"sign":5}`},
		{"no result", `{"sign":"x"}`},
		{"result number", `{"result":1,"sign":"x"}`},
		{"result object", `{"result":` + good + `,"sign":"` + sign + `"}`},
		{"result empty", `{"result":"","sign":"` + AnswerSign("", secret) + `"}`},
		{"result null", `{"result":null,"sign":"x"}`},
		{"keys in capitals", `{"RESULT":` + string(quotedGood) + `,"Sign":"` + sign + `"}`},
		{"duplicate result", `{"result":"x","result":` + string(quotedGood) + `,"sign":"` + sign + `"}`},
		{"data after the answer", string(signed(good)) + ` garbage`},
		{"space around the answer", "\n " + string(signed(good)) + "\t\n"},
		{"result invalid UTF-8", `{"result":"` + strings.ReplaceAll(bad, `"`, `\"`) + `","sign":"` + AnswerSign(bad, secret) + `"}`},
		{"result invalid UTF-8 signed as read", `{"result":"` + strings.ReplaceAll(bad, `"`, `\"`) + `","sign":"` + AnswerSign(strings.ToValidUTF8(bad, "\uFFFD"), secret) + `"}`},
		{"empty", ``}, {"null", `null`}, {"array", `[]`}, {"html", `<html>`}, {"truncated", `{"result":"{}"`},
	}
}

// TestParseGolden: every answer above parses, with and without include_pii and however the
// order was asked for, to the outcome stored in testdata/parse_golden.txt, all of it (go test
// -run TestParseGolden -update writes the file).
func TestParseGolden(t *testing.T) {
	observed := time.Date(2026, 11, 24, 10, 0, 0, 5, time.FixedZone("CST", 8*3600))
	queries := []struct {
		name string
		pii  bool
		q    providers.Query
	}{
		{"by pay_no", false, providers.Query{Kind: events.KindPayment, AppID: "kd100020200220", ProviderOrderNo: "600230547601422048"}},
		{"by out_trade_no, pii", true, providers.Query{Kind: events.KindPayment, AppID: "kd100020200220", OrderNo: "300230547599788000"}},
		{"by neither", false, providers.Query{Kind: events.KindPayment}},
	}
	var cases []providertest.Case
	for _, qc := range queries {
		c := client(t, qc.pii)
		for _, r := range goldenResults(t) {
			cases = append(cases, providertest.Case{Name: qc.name + ": " + r[0], Parse: func() (providers.Result, error) {
				return c.parseAnswer(qc.q, secret, signedAsRead(r[1]), observed)
			}})
		}
		for _, e := range goldenEnvelopes(t) {
			cases = append(cases, providertest.Case{Name: qc.name + ": answer " + e[0], Parse: func() (providers.Result, error) {
				return c.parseAnswer(qc.q, secret, []byte(e[1]), observed)
			}})
		}
	}
	providertest.Golden(t, "testdata/parse_golden.txt", cases)
}
