package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
	varRe        = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)
)

// prepare walks the YAML tree n against the declared type t: it rejects unknown keys and values
// of the wrong type, expands ${VAR} and ${VAR:-default} in scalars, and adds the declared
// default of every key the file leaves out, so that decoding afterwards cannot fail.
func prepare(n *yaml.Node, t reflect.Type, path string, env func(string) (string, bool)) error {
	if n.Kind == yaml.AliasNode {
		return keyErr(path, "YAML aliases are not supported")
	}
	switch {
	case t == durationType || t.Kind() != reflect.Struct && t.Kind() != reflect.Map && t.Kind() != reflect.Slice:
		return prepareScalar(n, t, path, env)
	case t.Kind() == reflect.Struct:
		if isNull(n) {
			*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if n.Kind != yaml.MappingNode {
			return keyErr(path, "must be a mapping of keys")
		}
		present := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fieldByKey(t, key)
			if !ok {
				return keyErr(join(path, key), "unknown key (known: %s)", strings.Join(keysOf(t), ", "))
			}
			if present[key] {
				return keyErr(join(path, key), "given twice")
			}
			present[key] = true
			if err := prepare(n.Content[i+1], f.Type, join(path, key), env); err != nil {
				return err
			}
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := yamlKey(f)
			if present[key] {
				continue
			}
			def, hasDefault := f.Tag.Lookup("default")
			var val *yaml.Node
			switch {
			case hasDefault:
				val = &yaml.Node{Kind: yaml.ScalarNode, Value: def}
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				val = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			default:
				continue
			}
			if err := prepare(val, f.Type, join(path, key), env); err != nil {
				return err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
		}
		return nil
	case t.Kind() == reflect.Map:
		if isNull(n) {
			*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if n.Kind != yaml.MappingNode {
			return keyErr(path, "must be a mapping")
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if seen[key] {
				return keyErr(join(path, key), "given twice")
			}
			seen[key] = true
			if err := prepare(n.Content[i+1], t.Elem(), join(path, key), env); err != nil {
				return err
			}
		}
		return nil
	default: // slice
		if isNull(n) {
			*n = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		}
		if n.Kind != yaml.SequenceNode {
			return keyErr(path, "must be a list")
		}
		for i, item := range n.Content {
			if err := prepare(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), env); err != nil {
				return err
			}
		}
		return nil
	}
}

func prepareScalar(n *yaml.Node, t reflect.Type, path string, env func(string) (string, bool)) error {
	if n.Kind != yaml.ScalarNode {
		return keyErr(path, "must be a single value")
	}
	value := n.Value
	if isNull(n) {
		value = ""
	}
	var missing string
	value = varRe.ReplaceAllStringFunc(value, func(m string) string {
		sub := varRe.FindStringSubmatch(m)
		if v, ok := env(sub[1]); ok && v != "" {
			return v
		}
		if strings.Contains(m, ":-") {
			return sub[2]
		}
		if missing == "" {
			missing = sub[1]
		}
		return ""
	})
	if missing != "" {
		return keyErr(path, "environment variable %s is not set", missing)
	}
	switch {
	case t == durationType:
		if value == "" {
			value = "0s"
		}
		d, err := time.ParseDuration(value)
		if err != nil {
			return keyErr(path, "%q is not a duration such as 30s, 5m or 1h", value)
		}
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: d.String()}
	case t.Kind() == reflect.Int:
		i, err := strconv.Atoi(value)
		if err != nil {
			return keyErr(path, "%q is not a whole number", value)
		}
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return keyErr(path, "%q is not true or false", value)
		}
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
	case t.Kind() == reflect.String:
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	default:
		return keyErr(path, "unsupported type %s", t) // a declaration error, caught by the tests
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" || n.Kind == 0
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if yamlKey(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func keysOf(t reflect.Type) []string {
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = yamlKey(t.Field(i))
	}
	return keys
}

// Field documents one configuration key.
type Field struct {
	Key, Type, Default, Doc string
}

// Reference lists every key with its type, default and description, from the declarations.
func Reference() []Field {
	var out []Field
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := join(path, yamlKey(f))
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType:
				walk(ft, key)
			case ft.Kind() == reflect.Map:
				out = append(out, Field{Key: key, Type: "map", Doc: f.Tag.Get("doc")})
				if ft.Elem().Kind() == reflect.Struct {
					walk(ft.Elem(), key+".<name>")
				}
			case ft.Kind() == reflect.Slice:
				out = append(out, Field{Key: key, Type: "list", Doc: f.Tag.Get("doc")})
				if ft.Elem().Kind() == reflect.Struct {
					walk(ft.Elem(), key+"[]")
				}
			default:
				typ := ft.Kind().String()
				if ft == durationType {
					typ = "duration"
				}
				out = append(out, Field{Key: key, Type: typ, Default: f.Tag.Get("default"), Doc: f.Tag.Get("doc")})
			}
		}
	}
	walk(configType, "")
	return out
}
