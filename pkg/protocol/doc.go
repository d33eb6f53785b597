// Package protocol holds the stream codecs a gateway uses to cut raw TCP bytes
// into messages and to frame outgoing messages: the newline "text" protocol and
// the length-prefixed "frame" protocol of GatewayWorker, behind one small
// interface that users implement for their own binary protocols.
//
// Codecs are pure and stateless: the gateway keeps the unconsumed tail of a
// connection's input, so an idle connection costs no codec state at all.
package protocol
