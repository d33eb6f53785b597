// Package chat is the browser chat demo that cmd/gatewayworker serves: a
// port of workerman-chat's Events.php to the worker API. It speaks
// workerman-chat's JSON protocol, so its front ends (the page in web/ and
// the original jQuery one) work unchanged against this stack; a client
// logs in to a room, says something to the room or to one member, and the
// room hears when members come and go.
//
// Where it departs from the PHP original, and why:
//
//   - Names and contents are escaped exactly once, as htmlspecialchars with
//     ENT_QUOTES does; the original escapes names twice in login notices,
//     which shows "&amp;lt;" to its own users. The session keeps the raw
//     name, so other programs reading sessions see what the user typed.
//   - Private messages carry the original's prefixes ("<b>对你说: </b>"
//     for the target, "<b>你对NAME说: </b>" for the sender), so pages
//     written for workerman-chat tell them from public ones; the page in
//     web/ renders text, not HTML, and turns the prefixes into its own marks.
//   - Client mistakes (a say before login, bad JSON, an offline target)
//     get a {"type":"error","message":...} reply instead of an exception
//     that the original only logs, so the user learns what went wrong.
//   - A login writes the session to the gateway before joining the room,
//     so that two members logging in at the same moment always see each
//     other: in the original, the second one's list can miss the first.
//
// [Handlers] keeps no state outside client sessions, so any number of
// workers can run it. [NewWebHandler] serves the page.
package chat
