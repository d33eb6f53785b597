//go:build !race

package gateway

import "github.com/lesismal/nbio/nbhttp"

func raceBridge(*nbhttp.Engine) {}
