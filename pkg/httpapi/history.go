package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// historyBody answers GET /v1/history/{uid|group}/{name}.
type historyBody struct {
	Messages []historyMessage `json:"messages"`
	Complete bool             `json:"complete"`
}

// historyMessage is a stored push: data as a UTF-8 string, or data_base64
// for bytes that are not text, as pushes are sent.
type historyMessage struct {
	Pos        string  `json:"pos"`
	Data       *string `json:"data,omitempty"`
	DataBase64 []byte  `json:"data_base64,omitempty"`
	Frame      string  `json:"frame"`
}

// history serves the stored pushes of a uid or group (kind "uid" or
// "group", the path parameter's name too): ?since=<pos>&limit=<n>.
func history(kind string) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		name, err := pathName(r, kind)
		if err != nil {
			return nil, err
		}
		q := r.URL.Query()
		limit := 0
		if s := q.Get("limit"); s != "" {
			if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > api.MaxHistoryLimit {
				return nil, invalid("limit %q: want 1 to %d", s, api.MaxHistoryLimit)
			}
		}
		since := q.Get("since")
		if since != "" {
			if _, err := bus.ParsePosition(since); err != nil {
				return nil, invalid("since %q: want a position <epoch>:<seq>", since)
			}
		}
		return func(ctx context.Context, a *api.Client) (int, any, error) {
			h, err := a.GetHistory(ctx, kind, name, since, limit)
			if err != nil {
				return 0, nil, err
			}
			body := historyBody{Messages: make([]historyMessage, len(h.Messages)), Complete: h.Complete}
			for i, m := range h.Messages {
				out := historyMessage{Pos: m.Pos, Frame: bus.Frame(m.Frame).String()}
				if utf8.Valid(m.Body) {
					s := string(m.Body)
					out.Data = &s
				} else {
					out.DataBase64 = m.Body
				}
				body.Messages[i] = out
			}
			return http.StatusOK, body, nil
		}, nil
	}
}
