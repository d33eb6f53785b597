<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * Pushes and queries over NATS, as pkg/api's Client does in Go
 * (docs/protocol.md, "Pushing" and "Queries from another language"):
 * commands go to the gateway named by the client id, group, uid and
 * broadcast sends are published once, and queries ask every live gateway
 * and merge their answers.
 */
final class Api
{
    public const DEFAULT_PREFIX = 'gw';
    /** The longest group or uid, in bytes. */
    public const MAX_NAME_LEN = 256;
    /** How long a gateway may stay silent before queries stop waiting for it (3 beats of 1.5 s). */
    private const LIVE_FOR = 4.5;
    /** How long a process that has not heard a round of beats waits for ping answers. */
    public const DISCOVERY_WINDOW = 0.15;

    private string $prefix;
    private ?int $beats = null;
    private float $beatsSince = 0.0;
    private bool $discovered = false;
    /** @var array<string, float> gateway id => when it was last heard of */
    private array $seen = [];
    /** @var list<string> the gateways that did not answer the last query */
    private array $missing = [];

    public function __construct(
        private readonly Connection $nc,
        string $prefix = self::DEFAULT_PREFIX,
        private readonly float $requestTimeout = 2.0,
        private readonly float $queryTimeout = 1.0,
        /** Throw PartialAnswerException when a gateway does not answer a query, rather than return what came. */
        private readonly bool $strict = false,
    ) {
        if ($prefix === '' || preg_match('/^[^.*> \t\r\n]+(\.[^.*> \t\r\n]+)*$/', $prefix) !== 1) {
            throw new NatsException("gatewayworker: subject prefix \"$prefix\": tokens must be non-empty, without wildcards or spaces");
        }
        $this->prefix = $prefix;
    }

    public function connection(): Connection
    {
        return $this->nc;
    }

    /** token(s) of docs/protocol.md: s itself if plain, else "~" + unpadded base64url. */
    public static function token(string $s): string
    {
        if (preg_match('/^[A-Za-z0-9_-]{1,64}$/', $s) === 1) {
            return $s;
        }
        return '~' . rtrim(strtr(base64_encode($s), '+/', '-_'), '=');
    }

    /** The reply-subject prefix of a role ("gateway", "worker", "api"), as bus.Subjects.Inbox. */
    public static function inboxPrefix(string $prefix, string $role): string
    {
        return '_INBOX.' . self::token($prefix === '' ? self::DEFAULT_PREFIX : $prefix) . '.' . $role;
    }

    /** The gateway id of a client id, or null if it is not a client id. */
    public static function gatewayOf(string $clientId): ?string
    {
        return preg_match('/^([A-Za-z0-9_]{1,32})-[0-9a-z]{1,13}-[0-9a-z]{1,13}$/D', $clientId, $m) === 1 ? $m[1] : null;
    }

    public static function checkName(string $name): void
    {
        if ($name === '' || strlen($name) > self::MAX_NAME_LEN) {
            throw new NatsException(sprintf('gatewayworker: group or uid "%s" must be 1 to %d bytes', $name, self::MAX_NAME_LEN));
        }
    }

    /** The gateways that did not answer the last query (empty when all did). */
    public function missingGateways(): array
    {
        return $this->missing;
    }

    /**
     * Sends a command about one client to its gateway and waits for the
     * answer. Returns the Reply, or null when the client is not connected
     * (not_found, or its gateway is not running).
     *
     * @throws NatsException bad client id, limit, bad_request, or no answer in time
     */
    public function toClient(string $clientId, int $op, string $name = '', string $body = '', int $frame = Envelope::FRAME_DEFAULT): ?array
    {
        $gw = self::gatewayOf($clientId);
        if ($gw === null) {
            throw new NatsException("gatewayworker: invalid client id \"$clientId\"");
        }
        try {
            $m = $this->nc->request("$this->prefix.$gw.cmd", Envelope::command($op, [$clientId], $name, $body, [], $frame), $this->requestTimeout);
        } catch (NoRespondersException) {
            return null; // its gateway is gone, and the client with it
        } catch (TimeoutException $e) {
            throw new TimeoutException("gatewayworker: gateway $gw unavailable: " . $e->getMessage(), 0, $e);
        }
        $r = Envelope::reply($m->data);
        return match ($r['e']) {
            '' => $r,
            'not_found' => null,
            'limit' => throw new NatsException("gatewayworker: limit: {$r['m']}"),
            default => throw new NatsException("gatewayworker: bad request: {$r['m']}"),
        };
    }

    /** Sends a command to clients of any gateways without waiting: one publish per gateway. */
    public function toClientsAsync(array $clientIds, int $op, string $body = ''): void
    {
        $byGateway = [];
        foreach ($clientIds as $id) {
            $gw = self::gatewayOf((string)$id);
            if ($gw === null) {
                throw new NatsException("gatewayworker: invalid client id \"$id\"");
            }
            $byGateway[$gw][(string)$id] = true;
        }
        foreach ($byGateway as $gw => $ids) {
            $this->nc->publish("$this->prefix.$gw.cmd", Envelope::command($op, array_map('strval', array_keys($ids)), '', $body));
        }
    }

    public function sendToUid(string $uid, string $data): void
    {
        self::checkName($uid);
        $this->nc->publish("$this->prefix.uid." . self::token($uid), Envelope::command(Envelope::OP_SEND, [], '', $data));
    }

    /** @param list<string> $exclude */
    public function sendToGroup(string $group, string $data, array $exclude = []): void
    {
        self::checkName($group);
        $this->nc->publish("$this->prefix.grp." . self::token($group), Envelope::command(Envelope::OP_SEND, [], '', $data, $exclude));
    }

    /** @param list<string> $exclude */
    public function sendToAll(string $data, array $exclude = []): void
    {
        $this->nc->publish("$this->prefix.all", Envelope::command(Envelope::OP_SEND, [], '', $data, $exclude));
    }

    public function ungroup(string $group): void
    {
        self::checkName($group);
        $this->nc->publish("$this->prefix.grp." . self::token($group), Envelope::command(Envelope::OP_UNGROUP));
    }

    /** The sum of a counting query's answers. */
    public function count(string $query, string $name = ''): int
    {
        $n = 0;
        foreach ($this->query($query, $name) as $r) {
            $n += $r['n'];
        }
        return $n;
    }

    /** A list query's answers, sorted and without duplicates (a uid or group spans gateways). */
    public function items(string $query, string $name = ''): array
    {
        $items = [];
        foreach ($this->query($query, $name) as $r) {
            foreach ($r['i'] as $item) {
                $items[$item] = true;
            }
        }
        $items = array_map('strval', array_keys($items));
        sort($items, SORT_STRING);
        return $items;
    }

    /** A sessions query's answers: client id => session. */
    public function sessions(string $query, string $name = ''): array
    {
        $out = [];
        foreach ($this->query($query, $name) as $r) {
            foreach ($r['s'] as $id => $raw) {
                $out[$id] = Envelope::decodeSession($raw);
            }
        }
        ksort($out, SORT_STRING);
        return $out;
    }

    /**
     * Runs a query on every live gateway and returns every Reply part that
     * came. When some expected gateway did not answer in time, the result
     * is partial: missingGateways() names them, and in strict mode
     * PartialAnswerException carries the result instead.
     *
     * @return list<array> Reply arrays (Envelope::reply)
     */
    public function query(string $query, string $name = ''): array
    {
        $expected = $this->liveGateways();
        $data = $name === '' ? '' : Envelope::command(0, [], $name);
        $done = [];
        $parts = [];
        $fault = null;
        $this->missing = [];
        try {
            $complete = $this->nc->gather("$this->prefix.q.$query", $data, $this->queryTimeout,
                function (Message $m) use ($expected, &$done, &$parts, &$fault): bool {
                    try {
                        $r = Envelope::reply($m->data);
                    } catch (NatsException) {
                        return false;
                    }
                    $g = $r['g'];
                    if ($g === '' || isset($done[$g])) {
                        return false;
                    }
                    if ($r['e'] !== '') {
                        $fault = "gatewayworker: gateway $g: {$r['e']}: {$r['m']}";
                        return true;
                    }
                    $parts[] = $r;
                    if ($r['more']) {
                        return false;
                    }
                    $done[$g] = true;
                    $this->seen[$g] = microtime(true);
                    foreach ($expected as $id) {
                        if (!isset($done[$id])) {
                            return false;
                        }
                    }
                    return $expected !== [];
                });
        } catch (NoRespondersException) {
            return []; // no gateway runs: nobody is online
        }
        if ($fault !== null) {
            throw new NatsException($fault);
        }
        if (!$complete) {
            $this->missing = array_values(array_diff($expected, array_keys($done)));
            sort($this->missing);
            if ($this->missing !== [] && $this->strict) {
                throw new PartialAnswerException($this->missing, $parts);
            }
        }
        return $parts;
    }

    /** Gateways that answer queries now, from their beats, or from a ping round for a process that just started. */
    public function liveGateways(): array
    {
        $now = microtime(true);
        if ($this->beats === null) {
            $this->beats = $this->nc->subscribe("$this->prefix.hb", function (Message $m): void {
                try {
                    $b = Envelope::decode($m->data);
                } catch (NatsException) {
                    return;
                }
                $g = (string)($b['g'] ?? '');
                if ($g !== '' && !empty($b['l'])) {
                    unset($this->seen[$g]);
                } elseif ($g !== '') {
                    $this->seen[$g] = microtime(true);
                }
            });
            $this->beatsSince = $now;
        }
        $this->nc->process(0.0); // beats that came while the process did other things
        if (!$this->discovered && $now - $this->beatsSince < self::LIVE_FOR) {
            try {
                $this->nc->gather("$this->prefix.q.ping", '', self::DISCOVERY_WINDOW, function (Message $m): bool {
                    try {
                        $g = Envelope::reply($m->data)['g'];
                    } catch (NatsException) {
                        return false;
                    }
                    if ($g !== '') {
                        $this->seen[$g] = microtime(true);
                    }
                    return false;
                });
            } catch (NoRespondersException) {
                // No gateway runs.
            }
            $this->discovered = true;
        }
        $ids = [];
        foreach ($this->seen as $g => $at) {
            if (microtime(true) - $at <= self::LIVE_FOR) {
                $ids[] = (string)$g;
            } else {
                unset($this->seen[$g]);
            }
        }
        sort($ids);
        return $ids;
    }
}
