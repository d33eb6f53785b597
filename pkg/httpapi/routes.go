package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// call is an API call whose request was read and checked: running it is
// the first moment anything goes to NATS.
type call func(ctx context.Context, a *api.Client) (status int, body any, err error)

// route is one method and path of the API. parse reads and checks the
// request without any I/O but reading its body.
type route struct {
	pattern string
	parse   func(r *http.Request) (call, error)
}

// Worker info waits: how long GET /v1/workers listens for answers.
const (
	DefaultWorkerWait = 300 * time.Millisecond
	MaxWorkerWait     = 5 * time.Second
)

// Answers. List fields are never null; query answers carry "partial" and
// "missing" when some live gateway did not answer in time.
type (
	okBody struct {
		OK bool `json:"ok"`
	}
	partial struct {
		Partial bool     `json:"partial,omitempty"`
		Missing []string `json:"missing,omitempty"`
	}
	countBody struct {
		Count int `json:"count"`
		partial
	}
	onlineBody struct {
		Online bool `json:"online"`
		partial
	}
	clientIDsBody struct {
		ClientIDs []string `json:"client_ids"`
		partial
	}
	uidsBody struct {
		UIDs []string `json:"uids"`
		partial
	}
	groupsBody struct {
		Groups []string `json:"groups"`
		partial
	}
	sessionsBody struct {
		Sessions map[string]map[string]any `json:"sessions"`
		partial
	}
	gatewaysBody struct {
		Gateways []api.GatewayInfo `json:"gateways"`
		partial
	}
	workersBody struct {
		Workers []api.WorkerInfo `json:"workers"`
	}
	sessionBody struct {
		Session map[string]any `json:"session"`
	}
	uidBody struct {
		UID string `json:"uid"`
	}
)

func (p *partial) markPartial(missing []string) { p.Partial, p.Missing = true, missing }

type partialMarker interface{ markPartial(missing []string) }

// queried answers a query: 200 with body, marked partial when err says
// some gateways did not answer; other errors are errors.
func queried(body partialMarker, err error) (int, any, error) {
	var qe *api.QueryError
	if errors.As(err, &qe) {
		body.markPartial(qe.Missing)
		return http.StatusOK, body, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, body, nil
}

// accepted answers a push that was handed to NATS (202): delivery to
// group, uid and broadcast members is at most once and not confirmed.
func accepted(err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, okBody{OK: true}, nil
}

// done answers a call its gateway confirmed (200).
func done(err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, okBody{OK: true}, nil
}

func list(items []string) []string {
	if items == nil {
		return []string{}
	}
	return items
}

// noBody parses a route that takes nothing but its path.
func noBody(c call) func(*http.Request) (call, error) {
	return func(*http.Request) (call, error) { return c, nil }
}

// withClient parses a route whose path names a client.
func withClient(f func(id string) call) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		id, err := pathClientID(r)
		if err != nil {
			return nil, err
		}
		return f(id), nil
	}
}

// withName parses a route whose path names a group or uid.
func withName(param string, f func(name string) call) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		name, err := pathName(r, param)
		if err != nil {
			return nil, err
		}
		return f(name), nil
	}
}

// routes lists every route but the batch, each mapped to one pkg/api call.
func routes() []route {
	return []route{
		// Pushes.
		{"POST /v1/send/client", func(r *http.Request) (call, error) {
			var req struct {
				ClientID string `json:"client_id"`
				payload
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if err := checkClientID("client_id", req.ClientID); err != nil {
				return nil, err
			}
			data, err := req.bytes(true)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return accepted(req.sender(a).SendToClient(ctx, req.ClientID, data))
			}, nil
		}},
		{"POST /v1/send/uid", func(r *http.Request) (call, error) {
			var req struct {
				UID string `json:"uid"`
				payload
				Recoverable bool `json:"recoverable"`
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if err := checkName("uid", req.UID); err != nil {
				return nil, err
			}
			data, err := req.bytes(true)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return accepted(req.recoverable(req.sender(a), req.Recoverable).SendToUID(ctx, req.UID, data))
			}, nil
		}},
		{"POST /v1/send/group", func(r *http.Request) (call, error) {
			var req struct {
				Group   string   `json:"group"`
				Exclude []string `json:"exclude"`
				payload
				Recoverable bool `json:"recoverable"`
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			if err := checkName("group", req.Group); err != nil {
				return nil, err
			}
			data, err := req.bytes(true)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return accepted(req.recoverable(req.sender(a), req.Recoverable).SendToGroup(ctx, req.Group, data, req.Exclude...))
			}, nil
		}},
		{"POST /v1/send/all", func(r *http.Request) (call, error) {
			var req struct {
				Exclude []string `json:"exclude"`
				payload
			}
			if err := decodeBody(r, &req); err != nil {
				return nil, err
			}
			data, err := req.bytes(true)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return accepted(req.sender(a).SendToAll(ctx, data, req.Exclude...))
			}, nil
		}},

		// Clients.
		{"GET /v1/clients", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			ids, err := a.GetAllClientIDList(ctx)
			return queried(&clientIDsBody{ClientIDs: list(ids)}, err)
		})},
		{"GET /v1/clients/count", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			n, err := a.GetAllClientIDCount(ctx)
			return queried(&countBody{Count: n}, err)
		})},
		{"GET /v1/clients/sessions", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			s, err := a.GetAllClientSessions(ctx)
			return queried(&sessionsBody{Sessions: s}, err)
		})},
		{"GET /v1/clients/{id}/online", withClient(func(id string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				on, err := a.IsOnline(ctx, id)
				if err != nil {
					return 0, nil, err
				}
				return http.StatusOK, onlineBody{Online: on}, nil
			}
		})},
		{"POST /v1/clients/{id}/close", withLastData(func(ctx context.Context, a *api.Client, id string, data []byte) error {
			return a.CloseClient(ctx, id, data)
		})},
		{"POST /v1/clients/{id}/accept", withUID(false, func(ctx context.Context, a *api.Client, id, uid string) error {
			return a.AcceptClient(ctx, id, uid)
		})},
		{"POST /v1/clients/{id}/reject", withLastData(func(ctx context.Context, a *api.Client, id string, data []byte) error {
			return a.RejectClient(ctx, id, data)
		})},
		{"POST /v1/clients/{id}/destroy", withClient(func(id string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return done(a.DestroyClient(ctx, id))
			}
		})},
		{"GET /v1/clients/{id}/session", withClient(func(id string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				s, err := a.GetSession(ctx, id)
				if err != nil {
					return 0, nil, err
				}
				return http.StatusOK, sessionBody{Session: s}, nil
			}
		})},
		{"PUT /v1/clients/{id}/session", parseSession(func(ctx context.Context, a *api.Client, id string, s map[string]any) error {
			return a.SetSession(ctx, id, s)
		})},
		{"PATCH /v1/clients/{id}/session", parseSession(func(ctx context.Context, a *api.Client, id string, s map[string]any) error {
			return a.UpdateSession(ctx, id, s)
		})},
		{"GET /v1/clients/{id}/uid", withClient(func(id string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				uid, err := a.GetUIDByClientID(ctx, id)
				if err != nil {
					return 0, nil, err
				}
				return http.StatusOK, uidBody{UID: uid}, nil
			}
		})},
		{"POST /v1/clients/{id}/uid", withUID(true, func(ctx context.Context, a *api.Client, id, uid string) error {
			return a.BindUID(ctx, id, uid)
		})},
		{"DELETE /v1/clients/{id}/uid/{uid}", func(r *http.Request) (call, error) {
			id, err := pathClientID(r)
			if err != nil {
				return nil, err
			}
			uid, err := pathName(r, "uid")
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return done(a.UnbindUID(ctx, id, uid))
			}, nil
		}},

		// Groups.
		{"GET /v1/groups", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			groups, err := a.GetAllGroupIDList(ctx)
			return queried(&groupsBody{Groups: list(groups)}, err)
		})},
		{"POST /v1/groups/{group}/join", parseMember(func(ctx context.Context, a *api.Client, group, id string) error {
			return a.JoinGroup(ctx, id, group)
		})},
		{"POST /v1/groups/{group}/leave", parseMember(func(ctx context.Context, a *api.Client, group, id string) error {
			return a.LeaveGroup(ctx, id, group)
		})},
		{"DELETE /v1/groups/{group}", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				return accepted(a.Ungroup(ctx, group))
			}
		})},
		{"GET /v1/groups/{group}/clients", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				ids, err := a.GetClientIDListByGroup(ctx, group)
				return queried(&clientIDsBody{ClientIDs: list(ids)}, err)
			}
		})},
		{"GET /v1/groups/{group}/count", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				n, err := a.GetClientCountByGroup(ctx, group)
				return queried(&countBody{Count: n}, err)
			}
		})},
		{"GET /v1/groups/{group}/sessions", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				s, err := a.GetClientSessionsByGroup(ctx, group)
				return queried(&sessionsBody{Sessions: s}, err)
			}
		})},
		{"GET /v1/groups/{group}/uids", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				uids, err := a.GetUIDListByGroup(ctx, group)
				return queried(&uidsBody{UIDs: list(uids)}, err)
			}
		})},
		{"GET /v1/groups/{group}/uid-count", withName("group", func(group string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				n, err := a.GetUIDCountByGroup(ctx, group)
				return queried(&countBody{Count: n}, err)
			}
		})},

		// Uids.
		{"GET /v1/uids", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			uids, err := a.GetAllUIDList(ctx)
			return queried(&uidsBody{UIDs: list(uids)}, err)
		})},
		{"GET /v1/uids/count", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			n, err := a.GetAllUIDCount(ctx)
			return queried(&countBody{Count: n}, err)
		})},
		{"GET /v1/uids/{uid}/clients", withName("uid", func(uid string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				ids, err := a.GetClientIDsByUID(ctx, uid)
				return queried(&clientIDsBody{ClientIDs: list(ids)}, err)
			}
		})},
		{"GET /v1/uids/{uid}/online", withName("uid", func(uid string) call {
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				on, err := a.IsUIDOnline(ctx, uid)
				return queried(&onlineBody{Online: on}, err)
			}
		})},

		// History.
		{"GET /v1/history/uid/{uid}", history("uid")},
		{"GET /v1/history/group/{group}", history("group")},

		// Deployment.
		{"GET /v1/gateways", noBody(func(ctx context.Context, a *api.Client) (int, any, error) {
			infos, err := a.GetGatewayInfos(ctx)
			if infos == nil {
				infos = []api.GatewayInfo{}
			}
			return queried(&gatewaysBody{Gateways: infos}, err)
		})},
		{"GET /v1/workers", func(r *http.Request) (call, error) {
			wait := DefaultWorkerWait
			if s := r.URL.Query().Get("wait"); s != "" {
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 || d > MaxWorkerWait {
					return nil, invalid("wait %q: want a duration such as 300ms, at most %v", s, MaxWorkerWait)
				}
				wait = d
			}
			return func(ctx context.Context, a *api.Client) (int, any, error) {
				infos, err := a.GetWorkerInfos(ctx, wait)
				if err != nil {
					return 0, nil, err
				}
				if infos == nil {
					infos = []api.WorkerInfo{}
				}
				return http.StatusOK, workersBody{Workers: infos}, nil
			}, nil
		}},
	}
}

// parseSession parses PUT and PATCH of a session: {"session": {...}}.
func parseSession(f func(ctx context.Context, a *api.Client, id string, s map[string]any) error) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		id, err := pathClientID(r)
		if err != nil {
			return nil, err
		}
		var req struct {
			Session map[string]any `json:"session"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if req.Session == nil {
			return nil, invalid(`session is required: an object such as {"session":{"name":"Ann"}}`)
		}
		s, err := sessionFromJSON(req.Session)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, a *api.Client) (int, any, error) {
			return done(f(ctx, a, id, s))
		}, nil
	}
}

// parseMember parses a join or leave: the group in the path, the client in the body.
func parseMember(f func(ctx context.Context, a *api.Client, group, id string) error) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		group, err := pathName(r, "group")
		if err != nil {
			return nil, err
		}
		var req struct {
			ClientID string `json:"client_id"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if err := checkClientID("client_id", req.ClientID); err != nil {
			return nil, err
		}
		return func(ctx context.Context, a *api.Client) (int, any, error) {
			return done(f(ctx, a, group, req.ClientID))
		}, nil
	}
}

// serveRoute parses the request, then runs it; inside a batch's check
// pass, it hands the parsed call to the batch instead of running it.
func (h *handler) serveRoute(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := rt.parse(r)
		if err != nil {
			writeError(w, classify(err))
			return
		}
		if s, ok := r.Context().Value(slotKey{}).(*slot); ok {
			s.call, s.pattern = c, rt.pattern
			return
		}
		status, b := h.run(r.Context(), r.Method, rt.pattern, c)
		writeRaw(w, status, b)
	})
}

// withLastData parses a client id and the last data sent before a close
// (close, reject): a payload without a frame type, since it is no push.
func withLastData(fn func(ctx context.Context, a *api.Client, id string, data []byte) error) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		id, err := pathClientID(r)
		if err != nil {
			return nil, err
		}
		var req payload
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if req.Frame != "" {
			return nil, invalid("frame applies to pushes, not to the last data of a close")
		}
		data, err := req.bytes(false)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, a *api.Client) (int, any, error) {
			return done(fn(ctx, a, id, data))
		}, nil
	}
}

// withUID parses a client id and a body {"uid": ...} (bind, accept); an
// empty uid is refused when required.
func withUID(required bool, fn func(ctx context.Context, a *api.Client, id, uid string) error) func(*http.Request) (call, error) {
	return func(r *http.Request) (call, error) {
		id, err := pathClientID(r)
		if err != nil {
			return nil, err
		}
		var req struct {
			UID string `json:"uid"`
		}
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if required || req.UID != "" {
			if err := checkName("uid", req.UID); err != nil {
				return nil, err
			}
		}
		return func(ctx context.Context, a *api.Client) (int, any, error) {
			return done(fn(ctx, a, id, req.UID))
		}, nil
	}
}
