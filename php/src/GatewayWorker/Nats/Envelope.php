<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * The envelopes of docs/protocol.md: version byte 0x01, then msgpack.
 *
 * Encoding is done here rather than by ext-msgpack, which packs every PHP
 * string as msgpack str: the gateways read Command.b (and sessions) only as
 * bin, and keys and names must be str. Decoding uses ext-msgpack, which
 * reads str and bin alike into PHP strings.
 */
final class Envelope
{
    public const VERSION = "\x01";

    /** Ops of Command.o. */
    public const OP_SEND = 1;
    public const OP_CLOSE = 2;
    public const OP_DESTROY = 3;
    public const OP_BIND_UID = 4;
    public const OP_UNBIND_UID = 5;
    public const OP_JOIN_GROUP = 6;
    public const OP_LEAVE_GROUP = 7;
    public const OP_UNGROUP = 8;
    public const OP_GET_SESSION = 9;
    public const OP_SET_SESSION = 10;
    public const OP_UPDATE_SESSION = 11;
    public const OP_IS_ONLINE = 12;
    public const OP_GET_UID = 13;
    public const OP_ACCEPT = 15;
    public const OP_REJECT = 16;
    /** Sets the clients' default frame type (Command.f); 15 and 16 are the pending-connection ops. */
    public const OP_SET_FRAME = 17;

    /** Frame types of Command.f: the connection's default, text, binary. */
    public const FRAME_DEFAULT = 0;
    public const FRAME_TEXT = 1;
    public const FRAME_BINARY = 2;

    /**
     * A Command envelope; empty fields are left out, as the Go encoder does.
     *
     * @param list<string> $clients
     * @param list<string> $exclude
     */
    public static function command(int $op, array $clients = [], string $name = '', string $body = '', array $exclude = [], int $frame = self::FRAME_DEFAULT): string
    {
        $fields = [self::str('o') . self::int($op)];
        if ($clients !== []) {
            $fields[] = self::str('c') . self::strList($clients);
        }
        if ($name !== '') {
            $fields[] = self::str('n') . self::str($name);
        }
        if ($body !== '') {
            $fields[] = self::str('b') . self::bin($body);
        }
        if ($exclude !== []) {
            $fields[] = self::str('x') . self::strList($exclude);
        }
        if ($frame !== self::FRAME_DEFAULT) {
            $fields[] = self::str('f') . self::int($frame);
        }
        return self::VERSION . self::mapHeader(count($fields)) . implode('', $fields);
    }

    /**
     * Decodes a Reply into an array with every key present (zero values for missing ones).
     *
     * @return array{e: string, m: string, g: string, b: string, k: bool, n: int, i: list<string>, s: array<string, string>, more: bool, sq: int}
     */
    public static function reply(string $data): array
    {
        $v = self::decode($data);
        $r = [
            'e' => (string)($v['e'] ?? ''), 'm' => (string)($v['m'] ?? ''), 'g' => (string)($v['g'] ?? ''),
            'b' => (string)($v['b'] ?? ''), 'k' => (bool)($v['k'] ?? false), 'n' => (int)($v['n'] ?? 0),
            'i' => [], 's' => [], 'more' => (bool)($v['more'] ?? false), 'sq' => (int)($v['sq'] ?? 0),
        ];
        foreach ((array)($v['i'] ?? []) as $item) {
            $r['i'][] = (string)$item;
        }
        foreach ((array)($v['s'] ?? []) as $id => $session) {
            $r['s'][(string)$id] = (string)$session;
        }
        return $r;
    }

    /** AckStatus values. */
    public const ACK_DONE = 1;
    public const ACK_WORKING = 2;

    /**
     * An Ack envelope. $seq is an int, or a decimal string for values over
     * PHP_INT_MAX (ext-msgpack decodes such a uint64 as one: the reaper's
     * 2^64-2). With $setSession, $session (encoded; "" clears) replaces the
     * gateway's copy.
     */
    public static function ack(string $client, int|string $seq, int $status, bool $setSession = false, string $session = '', string $worker = ''): string
    {
        $fields = [self::str('c') . self::str($client), self::str('q') . self::uint($seq), self::str('t') . self::int($status)];
        if ($setSession) {
            $fields[] = self::str('x') . "\xc3";
            if ($session !== '') {
                $fields[] = self::str('s') . self::bin($session);
            }
        }
        if ($worker !== '') {
            // A sticky worker's id: the gateway sends the client's next batches to <p>.ev.<worker>.
            $fields[] = self::str('w') . self::str($worker);
        }
        return self::VERSION . self::mapHeader(count($fields)) . implode('', $fields);
    }

    /**
     * A worker's answer to <p>.wk.info: a Reply whose b is the WorkerInfo
     * envelope (id, boot in Unix ms, events handled, batches in flight).
     */
    public static function workerInfoReply(string $id, int $boot, int $handled, int $inFlight): string
    {
        $info = self::VERSION . self::mapHeader(4) . self::str('id') . self::str($id) . self::str('boot') . self::int($boot)
            . self::str('handled') . self::uint($handled) . self::str('in_flight') . self::int($inFlight);
        return self::VERSION . self::mapHeader(1) . self::str('b') . self::bin($info);
    }

    /** Decodes any envelope into PHP values. */
    public static function decode(string $data): array
    {
        if ($data === '' || $data[0] !== self::VERSION) {
            throw new NatsException(sprintf('gatewayworker: envelope version %s, this client speaks 1', $data === '' ? 'missing' : ord($data[0])));
        }
        $v = @msgpack_unpack(substr($data, 1));
        if (!is_array($v)) {
            throw new NatsException('gatewayworker: an envelope is not a msgpack map');
        }
        return $v;
    }

    /**
     * A session as the gateways store it: a msgpack map with string keys
     * (sorted), strings as str; "" for an empty session.
     */
    public static function encodeSession(array $session): string
    {
        return $session === [] ? '' : self::map($session);
    }

    /** Decodes a session; an empty one is []. */
    public static function decodeSession(string $data): array
    {
        if ($data === '') {
            return [];
        }
        $v = @msgpack_unpack($data);
        if (!is_array($v)) {
            throw new NatsException('gatewayworker: a session is not a msgpack map');
        }
        return $v;
    }

    /** Encodes any PHP value: lists as arrays, other arrays as maps with string keys. */
    public static function value(mixed $v): string
    {
        return match (true) {
            $v === null => "\xc0",
            $v === false => "\xc2",
            $v === true => "\xc3",
            is_int($v) => self::int($v),
            is_float($v) => "\xcb" . pack('E', $v),
            is_string($v) => self::str($v),
            is_array($v) && array_is_list($v) => self::list($v),
            is_array($v) => self::map($v),
            $v instanceof \JsonSerializable => self::value($v->jsonSerialize()),
            is_object($v) => self::map(get_object_vars($v)),
            default => throw new NatsException('gatewayworker: cannot encode a ' . get_debug_type($v)),
        };
    }

    private static function map(array $m): string
    {
        ksort($m, SORT_STRING);
        $out = self::mapHeader(count($m));
        foreach ($m as $k => $x) {
            $out .= self::str((string)$k) . self::value($x);
        }
        return $out;
    }

    private static function list(array $l): string
    {
        $out = self::arrayHeader(count($l));
        foreach ($l as $x) {
            $out .= self::value($x);
        }
        return $out;
    }

    /** @param list<string> $l */
    private static function strList(array $l): string
    {
        $out = self::arrayHeader(count($l));
        foreach ($l as $s) {
            $out .= self::str((string)$s);
        }
        return $out;
    }

    private static function mapHeader(int $n): string
    {
        return $n < 16 ? chr(0x80 | $n) : ($n <= 0xffff ? "\xde" . pack('n', $n) : "\xdf" . pack('N', $n));
    }

    private static function arrayHeader(int $n): string
    {
        return $n < 16 ? chr(0x90 | $n) : ($n <= 0xffff ? "\xdc" . pack('n', $n) : "\xdd" . pack('N', $n));
    }

    private static function str(string $s): string
    {
        $n = strlen($s);
        return match (true) {
            $n < 32 => chr(0xa0 | $n),
            $n <= 0xff => "\xd9" . chr($n),
            $n <= 0xffff => "\xda" . pack('n', $n),
            default => "\xdb" . pack('N', $n),
        } . $s;
    }

    private static function bin(string $s): string
    {
        $n = strlen($s);
        return match (true) {
            $n <= 0xff => "\xc4" . chr($n),
            $n <= 0xffff => "\xc5" . pack('n', $n),
            default => "\xc6" . pack('N', $n),
        } . $s;
    }

    /** A uint64 given as an int or as a decimal string. */
    private static function uint(int|string $v): string
    {
        if (is_int($v)) {
            return self::int($v);
        }
        if (preg_match('/^[0-9]{1,20}$/', $v) !== 1) {
            throw new NatsException("gatewayworker: \"$v\" is not a uint64");
        }
        // Long division by 2^32: the high half is the quotient, the low half the remainder.
        $hi = $lo = 0;
        foreach (str_split($v) as $d) {
            $lo = $lo * 10 + (int)$d;
            $hi = $hi * 10 + intdiv($lo, 0x100000000);
            $lo %= 0x100000000;
        }
        if ($hi > 0xffffffff) {
            throw new NatsException("gatewayworker: $v is over the uint64 range");
        }
        return "\xcf" . pack('NN', $hi, $lo);
    }

    private static function int(int $i): string
    {
        if ($i >= 0) {
            return match (true) {
                $i < 128 => chr($i),
                $i <= 0xff => "\xcc" . chr($i),
                $i <= 0xffff => "\xcd" . pack('n', $i),
                $i <= 0xffffffff => "\xce" . pack('N', $i),
                default => "\xcf" . pack('J', $i),
            };
        }
        return match (true) {
            $i >= -32 => chr($i & 0xff),
            $i >= -128 => "\xd0" . chr($i & 0xff),
            $i >= -32768 => "\xd1" . pack('n', $i & 0xffff),
            $i >= -2147483648 => "\xd2" . pack('N', $i & 0xffffffff),
            default => "\xd3" . pack('J', $i),
        };
    }
}
