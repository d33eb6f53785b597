//go:build !race

package gateway

import (
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

func raceBridge(*nbhttp.Engine) (opened func()) { return func() {} }

func raceBridgeTCP(*nbio.Engine) (opened func()) { return func() {} }
