package clientid

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMakeAndParse(t *testing.T) {
	id := Make("gw_1", 1764280000000, 42)
	require.Equal(t, "gw_1-mihyrchs-16", id)
	gw, err := Gateway(id)
	require.NoError(t, err)
	require.Equal(t, "gw_1", gw)
}

func TestGatewayRejects(t *testing.T) {
	for _, id := range []string{"", "gw", "gw-1", "gw-1-", "-1-2", "g.w-1-2", "gw-1-2-3", "gw-Z-2", "gw-1-*", "g>-1-1"} {
		_, err := Gateway(id)
		require.ErrorIs(t, err, ErrInvalid, id)
	}
}

func TestValidateGatewayID(t *testing.T) {
	require.NoError(t, ValidateGatewayID("Gw_09"))
	require.Error(t, ValidateGatewayID("a-b"))
	require.Error(t, ValidateGatewayID(""))
	require.Error(t, ValidateGatewayID("abcdefghijklmnopqrstuvwxyz0123456"))
}

func FuzzGateway(f *testing.F) {
	f.Add("gw-1-2")
	f.Add("x")
	f.Fuzz(func(t *testing.T, id string) {
		gw, err := Gateway(id)
		if err != nil {
			return
		}
		require.NoError(t, ValidateGatewayID(gw))
	})
}
