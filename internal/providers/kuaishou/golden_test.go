package kuaishou

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

// answer wraps a payment_info record (JSON text) in a successful answer.
func paymentAnswer(record string) string {
	return `{"result":1,"error_msg":"","payment_info":` + record + `}`
}

// quoted is s as a JSON string.
func quoted(s string) string { b, _ := json.Marshal(s); return string(b) }

// nested is a value nested depth arrays deep.
func nested(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

// goldenAnswers are answers as the documents, the tests and hostile providers give them.
func goldenAnswers(t *testing.T) [][2]string {
	var answers [][2]string
	add := func(name, body string) { answers = append(answers, [2]string{name, body}) }
	for _, file := range []string{"query_order.json", "query_settle.json", "query_refund.json"} {
		b, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		add("document "+file, string(b))
	}
	add("document payment object", paymentAnswer(docPayment))
	add("document payment string", paymentAnswer(quoted(docPayment)))
	add("settlement", `{"result":1,"settle_info":{"settle_no":"234325456565","total_amount":3234,"settle_amount":234,
		"settle_status":"SETTLE_PROCESSING","ks_order_no":"121120711774457276553","ks_settle_no":"321120700415719078553","promotion_amount":10,"developer_promotion_amount":20}}`)
	add("refund string", `{"result":1,"refund_info":"{\"refund_no\":\"1660811124083refund\",\"refund_amount\":1,\"refund_status\":\"REFUND_SUCCESS\",\"ks_order_no\":\"122081801105480677436\",\"ks_refund_no\":\"222081811172813537436\",\"ks_refund_type\":\"保证金账户退款\"}"}`)
	all := `{"result":1,"payment_info":{"pay_status":"SUCCESS","total_amount":1},"settle_info":{"settle_status":"SETTLE_SUCCESS","settle_amount":2,"ks_settle_no":"s"},"refund_info":"{\"refund_status\":\"REFUND_FAILED\",\"refund_amount\":3,\"ks_refund_no\":\"r\"}"}`
	add("every record", all)

	// Result codes and envelopes.
	for _, code := range []string{"100200100", "100200101", "100200102", "100200104", "100200105", "100200106", "999", "0", "-1",
		"1.0", "1e0", `"1"`, `"x"`, "null", "true", "[]", "{}", "9223372036854775808"} {
		add("result "+code, `{"result":`+code+`,"error_msg":"m"}`)
	}
	add("no result", `{"payment_info":{"pay_status":"SUCCESS"}}`)
	add("error_msg number", `{"result":100200104,"error_msg":5}`)
	add("error_msg invalid UTF-8", "{\"result\":100200104,\"error_msg\":\"bad \xff\xfe text\"}")
	for name, body := range map[string]string{
		"empty": ``, "space": ` `, "null": `null`, "array": `[1]`, "number": `1`, "string": `"x"`, "html": `<html>`,
		"truncated": `{"result":1,"payment_info":{"pay_status":"SUCCESS"`, "unquoted key": `{result:1}`,
		"trailing comma": `{"result":1,}`, "single quotes": `{'result':1}`, "nul byte": "{\"result\":1\x00}",
	} {
		add("body "+name, body)
	}
	add("data after the answer", paymentAnswer(`{"pay_status":"SUCCESS"}`)+` garbage`)
	add("second answer after the answer", paymentAnswer(`{"pay_status":"SUCCESS"}`)+`{"result":100200104}`)
	add("space around the answer", "\n\t "+paymentAnswer(`{"pay_status":"SUCCESS"}`)+"\n")
	add("answer keys in capitals", `{"RESULT":1,"Payment_Info":{"pay_status":"SUCCESS","total_amount":5}}`)
	add("answer duplicate records", `{"result":1,"payment_info":{"pay_status":"FAILED","total_amount":1,"a":1},"payment_info":{"pay_status":"SUCCESS","b":2}}`)
	add("answer duplicate record object then string", `{"result":1,"payment_info":{"pay_status":"FAILED"},"payment_info":"{\"pay_status\":\"SUCCESS\"}"}`)
	add("answer duplicate result", `{"result":100200104,"result":1,"payment_info":{"pay_status":"SUCCESS"}}`)

	// The record itself.
	for name, record := range map[string]string{
		"absent": ``, "null": `null`, "number": `12`, "true": `true`, "array": `[{"pay_status":"SUCCESS"}]`, "empty object": `{}`,
		"string null": `"null"`, "string empty": `""`, "string space": `" \n "`, "string array": `"[1]"`, "string string": quoted(`"{}"`),
		"string number": `"12"`, "string broken": `"{oops"`, "string truncated": quoted(`{"pay_status":"SUCCESS"`),
		"string data after": quoted(`{"pay_status":"SUCCESS"} x`), "string second object": quoted(`{"pay_status":"SUCCESS"}{}`),
		"string space around": quoted("\n {\"pay_status\":\"SUCCESS\"} \t"), "string of string record": quoted(quoted(`{"pay_status":"SUCCESS"}`)),
		"string invalid UTF-8": "\"{\\\"pay_status\\\":\\\"SUCC\xffESS\\\"}\"",
	} {
		if record == `` {
			add("record "+name, `{"result":1}`)
			continue
		}
		add("record "+name, paymentAnswer(record))
	}
	for name, record := range map[string]string{
		"duplicate fields":   `{"pay_status":"FAILED","pay_status":"SUCCESS","total_amount":1,"total_amount":2,"x":{"a":1},"x":{"b":2},"y":[1],"y":null}`,
		"keys in capitals":   `{"PAY_STATUS":"SUCCESS","Total_Amount":5}`,
		"keys in both cases": `{"pay_status":"SUCCESS","PAY_STATUS":"FAILED","total_amount":5,"TOTAL_AMOUNT":6}`,
		"empty key":          `{"pay_status":"SUCCESS","":1}`,
		"invalid UTF-8":      "{\"pay_status\":\"SUCC\xffESS\",\"k\xfe\":\"v\xc3\",\"ks_order_no\":\"\xed\xa0\x80\"}",
		"invalid UTF-8 keys": "{\"pay_status\":\"SUCCESS\",\"a\xff\":1,\"a\xfe\":2}",
		"escapes":            `{"pay_status":"\u0053UCCESS","note":"\u00e9\ud800\u0000\t\"\\\/","\u006b":"\ud83d\ude00"}`,
		"numbers":            `{"pay_status":"SUCCESS","i":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"over":9223372036854775808,"under":-9223372036854775809,"big":99999999999999999999,"huge":1e400,"tiny":1e-400,"neg0":-0,"f":0.5,"whole float":2.0,"exp":1E2,"small":1e-7,"n":[1,-1,0.25,12345678901234567890123,{"d":9007199254740993}]}`,
		"nested":             `{"pay_status":"SUCCESS","deep":` + nested(500) + `,"obj":{"a":{"b":{"c":[{"d":1.5}]}}}}`,
		"too deep":           `{"pay_status":"SUCCESS","deep":` + nested(10001) + `}`,
		"many fields":        `{"pay_status":"SUCCESS"` + strings.Repeat(`,"field":"value"`, 2000) + `,"last":1}`,
		"all types":          `{"pay_status":"SUCCESS","s":"x","t":true,"f":false,"z":null,"o":{},"a":[]}`,
	} {
		add("record "+name, paymentAnswer(record))
		add("record as string "+name, paymentAnswer(quoted(record)))
	}

	// The fields the result is made of.
	for _, v := range []string{`"SUCCESS"`, `"PROCESSING"`, `"NEW_ONE"`, `""`, `null`, `5`, `-1.5e3`, `true`, `{}`, `["SUCCESS"]`, `" SUCCESS"`, `"success"`} {
		add("pay_status "+v, paymentAnswer(`{"pay_status":`+v+`,"total_amount":1}`))
	}
	for _, v := range []string{`1200`, `"1200"`, `1200.0`, `0`, `-5`, `9007199254740991`, `9007199254740993`, `123456789012345678`,
		`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `1e3`, `"1e3"`, `1E2`, `12.5`, `"12.5"`, `1e400`, `1e-400`,
		`9007199254740993.0`, `"12元"`, `" 5"`, `"0x10"`, `"+5"`, `""`, `null`, `true`, `false`, `{}`, `[]`, `[1]`, `"\u0031\u0032"`, `-0`, `"-0"`, `0.0`} {
		add("total_amount "+v, paymentAnswer(`{"pay_status":"SUCCESS","total_amount":`+v+`}`))
	}
	for _, v := range []string{`1712753202906`, `"1712753202906"`, `0`, `-1`, `1712753202906.0`, `1e20`, `9223372036854775807`, `""`, `null`, `true`, `"soon"`, `{}`} {
		add("pay_time "+v, paymentAnswer(`{"pay_status":"SUCCESS","pay_time":`+v+`}`))
	}
	for _, v := range []string{`"WECHAT"`, `"ALIPAY"`, `"APPLE_PAY"`, `"UNIONPAY"`, `"wechat"`, `""`, `null`, `1`, `true`, `{}`} {
		add("pay_channel "+v, paymentAnswer(`{"pay_status":"SUCCESS","pay_channel":`+v+`}`))
	}
	for _, v := range []string{`"121112500031787702250"`, `121112500031787702250`, `1.5e3`, `""`, `null`, `false`, `[]`} {
		add("ks_order_no "+v, paymentAnswer(`{"pay_status":"SUCCESS","ks_order_no":`+v+`}`))
		add("ks_settle_no "+v, `{"result":1,"settle_info":{"settle_status":"SETTLE_SUCCESS","ks_settle_no":`+v+`}}`)
		add("ks_refund_no "+v, `{"result":1,"refund_info":{"refund_status":"REFUND_SUCCESS","ks_refund_no":`+v+`}}`)
		add("out_order_no "+v, paymentAnswer(`{"pay_status":"SUCCESS","out_order_no":`+v+`}`))
	}
	for name, v := range map[string]string{
		"object in a string": quoted(`{"url":"","item_id":"5239375269605736845","n":9007199254740993,"f":0.5,"o":{"a":[1]}}`),
		"empty string":       `""`, "text": `"not json"`, "data after the object": quoted(`{"a":1} junk`),
		"two objects": quoted(`{"a":1}{"b":2}`), "array in a string": quoted(`[1,2]`), "space before": quoted(` {"a":1}`),
		"truncated": quoted(`{"a":`), "null in a string": quoted(`null`), "string in a string": quoted(`"{}"`),
		"object": `{"a":1}`, "array": `[1]`, "null": `null`, "number": `5`, "true": `true`,
		"invalid UTF-8": "\"{\\\"a\\\":\\\"\xff\\\"}\"", "too deep": quoted(`{"deep":` + nested(10001) + `}`),
	} {
		add("extra_info "+name, paymentAnswer(`{"pay_status":"SUCCESS","extra_info":`+v+`}`))
	}
	return answers
}

// TestParseGolden: every answer above parses, for every kind, to the outcome stored in
// testdata/parse_golden.txt, all of it (go test -run TestParseGolden -update writes the file).
func TestParseGolden(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second})
	var cases []providertest.Case
	for _, a := range goldenAnswers(t) {
		for _, kind := range []string{events.KindPayment, events.KindSettlement, events.KindRefund} {
			cases = append(cases, providertest.Case{Name: kind + ": " + a[0], Parse: func() (providers.Result, error) {
				q := providers.Query{Kind: kind, AppID: "a", OrderNo: docOrderNos[kind]}
				return c.parseAnswer(q, endpoints[kind], []byte(a[1]), time.Date(2026, 11, 24, 10, 0, 0, 5, time.FixedZone("CST", 8*3600)))
			}})
		}
	}
	providertest.Golden(t, "testdata/parse_golden.txt", cases)
}
