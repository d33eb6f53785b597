package worker

// ReaperKnows returns how many clients of gateway gw the running worker's
// reaper holds in its synced table, and -1 before it holds one: tests wait
// for it instead of sleeping until presence reports arrive.
func ReaperKnows(w *Worker, gw string) int {
	r := w.reaper.Load()
	if r == nil {
		return -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.core.gateways[gw]
	if t == nil || !t.synced {
		return -1
	}
	return len(t.clients)
}
