package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHistoryRoutes: "recoverable" sends are stored and read back by
// position, binary ones in base64; bad parameters are refused.
func TestHistoryRoutes(t *testing.T) {
	s := newStack(t, stackConfig{})
	for _, body := range []string{
		`{"group":"room","data":"one","recoverable":true}`,
		`{"group":"room","data":"plain"}`,
		`{"group":"room","data_base64":"/wA=","frame":"binary","recoverable":true}`,
		`{"uid":"bob","data":"hi","recoverable":true}`,
	} {
		path := "/v1/send/group"
		if body[2] == 'u' {
			path = "/v1/send/uid"
		}
		status, answer := s.call("POST", path, body)
		require.Equal(t, http.StatusAccepted, status, "%v", answer)
	}
	var h struct {
		Messages []struct {
			Pos, Frame string
			Data       *string
			DataBase64 string `json:"data_base64"`
		}
		Complete bool
	}
	get := func(target string) int {
		status, _, raw := s.raw("GET", target, nil, http.Header{"Authorization": {"Bearer " + testKey}})
		if status == http.StatusOK {
			h.Messages = nil
			require.NoError(t, json.Unmarshal(raw, &h))
		}
		return status
	}
	require.Equal(t, http.StatusOK, get("/v1/history/group/room"))
	require.True(t, h.Complete)
	require.Len(t, h.Messages, 2)
	require.Equal(t, "one", *h.Messages[0].Data)
	require.Equal(t, "default", h.Messages[0].Frame)
	require.Nil(t, h.Messages[1].Data)
	require.Equal(t, "/wA=", h.Messages[1].DataBase64)
	require.Equal(t, "binary", h.Messages[1].Frame)
	first := h.Messages[0].Pos
	require.Equal(t, http.StatusOK, get("/v1/history/group/room?since="+url.QueryEscape(first)+"&limit=5"))
	require.Len(t, h.Messages, 1)
	require.Equal(t, http.StatusOK, get("/v1/history/uid/bob"))
	require.Len(t, h.Messages, 1)
	for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?since=nope"} {
		require.Equal(t, http.StatusBadRequest, get("/v1/history/group/room"+bad), bad)
	}
}
