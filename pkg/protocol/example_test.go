package protocol_test

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// gameCodec is a custom binary protocol of the kind games use: an 8-byte
// header (magic 0x4757, a 2-byte command, a 4-byte body length) and the
// body. The gateway forwards header and body together, so workers see the
// command too.
type gameCodec struct{}

const gameMagic = 0x4757

func (gameCodec) Name() string { return "game" }

func (gameCodec) Split(buf []byte, max int) ([]byte, int, error) {
	if len(buf) < 8 {
		return nil, 0, nil
	}
	if binary.BigEndian.Uint16(buf) != gameMagic {
		return nil, 0, errors.Join(protocol.ErrMalformed, errors.New("bad magic"))
	}
	n := int(binary.BigEndian.Uint32(buf[4:8]))
	if n+8 > max {
		return nil, 0, protocol.ErrTooLarge
	}
	if len(buf) < 8+n {
		return nil, 0, nil
	}
	return buf[:8+n], 8 + n, nil
}

// Append frames msg, which holds the command in its first 2 bytes.
func (gameCodec) Append(dst, msg []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, gameMagic)
	dst = append(dst, msg[:2]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)-2))
	return append(dst, msg[2:]...)
}

// Example_customCodec plugs a fixed-header game protocol into the gateway:
// gateway.Config{TCP: []gateway.TCPListener{{Addr: "127.0.0.1:7300", Codec: gameCodec{}}}}.
func Example_customCodec() {
	var c protocol.Codec = gameCodec{}
	wire := c.Append(nil, append([]byte{0, 7}, "move north"...)) // command 7
	wire = append(wire, c.Append(nil, append([]byte{0, 9}, "fire"...))...)
	for len(wire) > 0 {
		msg, n, err := c.Split(wire, 1024)
		if err != nil || n == 0 {
			break
		}
		fmt.Printf("command %d: %s\n", binary.BigEndian.Uint16(msg[2:4]), msg[8:])
		wire = wire[n:]
	}
	_, _, err := c.Split([]byte("GET / HTTP/1.1\r\n"), 1024)
	fmt.Println(errors.Is(err, protocol.ErrMalformed))
	// Output:
	// command 7: move north
	// command 9: fire
	// true
}
