package config

import (
	"reflect"
	"strings"
)

// tomlKeys lists the TOML keys of Config.
func tomlKeys() []string {
	var keys []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}
