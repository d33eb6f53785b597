<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

use GatewayWorker\Lib\Context;

/**
 * The methods of GatewayWorker 4.0's static Gateway API, shared by
 * GatewayWorker\Lib\Gateway and GatewayClient\Gateway; each of those uses
 * GatewayConfig for its own settings and connection.
 *
 * Return shapes are GatewayWorker's: lists of ids are arrays keyed by the
 * id (getClientIdByUid excepted, a plain list), counts are ints, session
 * maps are keyed by client id. Sends, closes and session changes about one
 * client wait for its gateway's answer; sends to groups, uids and everyone
 * are published and not answered, as in GatewayWorker.
 */
abstract class StaticGateway
{
    /** @var list<string> the gateways that did not answer the last query, kept past a closed connection */
    private static array $lastMissing = [];

    /** The API under this class's settings, connecting on first use. */
    public static function api(): Api
    {
        if (static::$api === null) {
            $nc = new Connection([
                'servers' => static::$natsUrls, 'token' => static::$natsToken, 'user' => static::$natsUser,
                'pass' => static::$natsPassword, 'nkey_seed' => static::$natsNkeySeed, 'tls' => static::$natsTls,
                'connect_timeout' => static::$connectTimeout, 'inbox_prefix' => Api::inboxPrefix(static::$prefix, 'api'),
            ]);
            static::$api = new Api($nc, static::$prefix, static::$requestTimeout, static::$queryTimeout, static::$strictQueries);
        }
        return static::$api;
    }

    /** Uses an existing connection (a worker's) instead of one made from the settings; null forgets it. */
    public static function setConnection(?Connection $nc): void
    {
        static::$api = $nc === null ? null
            : new Api($nc, static::$prefix, static::$requestTimeout, static::$queryTimeout, static::$strictQueries);
    }

    /** Closes the connection (a short-lived process need not: it closes when the process ends). */
    public static function close(): void
    {
        static::$api?->connection()->close();
        static::$api = null;
    }

    /** Runs $f on the API, then closes the connection unless $persistentConnection. */
    private static function call(callable $f): mixed
    {
        $api = static::api();
        try {
            return $f($api);
        } finally {
            self::$lastMissing = $api->missingGateways();
            if (!static::$persistentConnection) {
                static::close();
            }
        }
    }

    /**
     * Sends $message to every client, or to those of $client_id_array,
     * but $exclude_client_id (an id or a list). $raw is accepted and
     * ignored: gateways frame every message by their listener's protocol.
     */
    public static function sendToAll($message, $client_id_array = null, $exclude_client_id = null, $raw = false)
    {
        $exclude = $exclude_client_id ? array_map('strval', (array)$exclude_client_id) : [];
        if ($client_id_array) {
            if (!is_array($client_id_array)) {
                trigger_error('Gateway::sendToAll: bad $client_id_array: ' . var_export($client_id_array, true), E_USER_WARNING);
                return;
            }
            $ids = array_values(array_filter(array_map('strval', $client_id_array),
                static fn (string $id): bool => !in_array($id, $exclude, true) && Api::gatewayOf($id) !== null));
            if ($ids !== []) {
                self::call(static fn (Api $a) => $a->toClientsAsync($ids, Envelope::OP_SEND, (string)$message));
            }
            return;
        }
        if (is_array($client_id_array)) {
            return; // an empty list: nobody
        }
        self::call(static fn (Api $a) => $a->sendToAll((string)$message, $exclude));
    }

    /** Sends $message to one client: true once its gateway has it, false if the client is gone or the id is not one. */
    public static function sendToClient($client_id, $message, $raw = false)
    {
        $client_id = (string)$client_id;
        if ($client_id === Context::$client_id) {
            return static::sendToCurrentClient($message, $raw);
        }
        return is_array(self::toClient($client_id, Envelope::OP_SEND, '', (string)$message));
    }

    /**
     * Sets the WebSocket frame type of what is sent to one client from now on (workerman's
     * $connection->websocketType): 'binary' or "\x82" (Websocket::BINARY_TYPE_ARRAYBUFFER),
     * 'text' or "\x81" (BINARY_TYPE_BLOB), 'default' for the gateway's --websocket-type.
     * True once its gateway has it, false if the client is gone or the id is not one.
     */
    public static function setWebSocketType($client_id, $type)
    {
        $frame = match ((string)$type) {
            'text', "\x81" => Envelope::FRAME_TEXT,
            'binary', "\x82" => Envelope::FRAME_BINARY,
            'default', '' => Envelope::FRAME_DEFAULT,
            default => throw new \InvalidArgumentException('gatewayworker: websocket type must be text, binary or default (or "\\x81", "\\x82")'),
        };
        return is_array(self::toClient((string)$client_id, Envelope::OP_SET_FRAME, '', '', $frame));
    }

    /** Sends $message to the client whose event runs, without waiting: its messages keep their order. */
    public static function sendToCurrentClient($message, $raw = false)
    {
        $id = self::current(__FUNCTION__);
        self::call(static fn (Api $a) => $a->toClientsAsync([$id], Envelope::OP_SEND, (string)$message));
        return true;
    }

    /** 1 if a client is bound to $uid, else 0. */
    public static function isUidOnline($uid)
    {
        return (int)(bool)static::getClientIdByUid($uid);
    }

    /** 1 if the client is connected, else 0. */
    public static function isOnline($client_id)
    {
        $r = self::toClient((string)$client_id, Envelope::OP_IS_ONLINE);
        return (int)($r !== null && $r !== false && $r['k']);
    }

    /** @deprecated as in GatewayWorker: use getAllClientSessions */
    public static function getAllClientInfo($group = '')
    {
        trigger_error('Gateway::getAllClientInfo is deprecated, use Gateway::getAllClientSessions', E_USER_DEPRECATED);
        return static::getAllClientSessions($group);
    }

    /** client id => session of every client, or of the members of $group. The current client's is $_SESSION. */
    public static function getAllClientSessions($group = '')
    {
        $group = (string)$group;
        $sessions = self::call(static fn (Api $a) => $group === ''
            ? $a->sessions('client_sessions') : $a->sessions('group_sessions', $group));
        self::noteMissing(__FUNCTION__);
        if (Context::$client_id !== null && isset($sessions[Context::$client_id])) {
            $sessions[Context::$client_id] = (array)($_SESSION ?? []);
        }
        return $sessions;
    }

    /** @deprecated as in GatewayWorker: use getClientSessionsByGroup */
    public static function getClientInfoByGroup($group)
    {
        trigger_error('Gateway::getClientInfoByGroup is deprecated, use Gateway::getClientSessionsByGroup', E_USER_DEPRECATED);
        return static::getClientSessionsByGroup($group);
    }

    public static function getClientSessionsByGroup($group)
    {
        return self::validGroup($group) ? static::getAllClientSessions($group) : [];
    }

    public static function getAllClientIdCount()
    {
        return static::getClientIdCountByGroup();
    }

    public static function getAllClientCount()
    {
        return static::getAllClientIdCount();
    }

    /** How many clients are in $group; with no group, how many are connected. */
    public static function getClientIdCountByGroup($group = '')
    {
        $group = (string)$group;
        $n = self::call(static fn (Api $a) => $group === '' ? $a->count('client_count') : $a->count('group_count', $group));
        self::noteMissing(__FUNCTION__);
        return $n;
    }

    public static function getClientCountByGroup($group = '')
    {
        return static::getClientIdCountByGroup($group);
    }

    /** client id => client id of the members of $group (a group or a list of groups). */
    public static function getClientIdListByGroup($group)
    {
        return self::validGroup($group) ? self::keyed(self::itemsOf('group_clients', (array)$group)) : [];
    }

    /** client id => client id of every connected client. */
    public static function getAllClientIdList()
    {
        return self::keyed(self::itemsOf('client_list', ['']));
    }

    /** The ids of the clients bound to $uid, as a list. */
    public static function getClientIdByUid($uid)
    {
        $uid = (string)$uid;
        return $uid === '' ? [] : self::itemsOf('uid_clients', [$uid]);
    }

    /** uid => uid of the members of $group (a group or a list of groups). */
    public static function getUidListByGroup($group)
    {
        return self::validGroup($group) ? self::keyed(self::itemsOf('group_uids', (array)$group)) : [];
    }

    public static function getUidCountByGroup($group)
    {
        return self::validGroup($group) ? count(static::getUidListByGroup($group)) : 0;
    }

    /** uid => uid of every uid with a connected client. */
    public static function getAllUidList()
    {
        return self::keyed(self::itemsOf('uid_list', ['']));
    }

    public static function getAllUidCount()
    {
        return count(static::getAllUidList());
    }

    /** The uid the client is bound to; null if it has none or is not connected. */
    public static function getUidByClientId($client_id)
    {
        $r = self::toClient((string)$client_id, Envelope::OP_GET_UID);
        return $r && $r['i'] !== [] ? $r['i'][0] : null;
    }

    /** group => group of every group with a member. */
    public static function getAllGroupIdList()
    {
        return self::keyed(self::itemsOf('group_list', ['']));
    }

    /** group => number of distinct uids among its members, for every group. */
    public static function getAllGroupUidCount()
    {
        return array_map('count', static::getAllGroupUidList());
    }

    /** group => [uid => uid] for every group whose members have uids. */
    public static function getAllGroupUidList()
    {
        return self::perGroup('group_uids');
    }

    /** group => [client id => client id] for every group. */
    public static function getAllGroupClientIdList()
    {
        return self::perGroup('group_clients');
    }

    /** group => number of members, for every group. */
    public static function getAllGroupClientIdCount()
    {
        return array_map('count', static::getAllGroupClientIdList());
    }

    /** Sends $message (if not null) to the client and closes it: true if it was connected. */
    public static function closeClient($client_id, $message = null)
    {
        $client_id = (string)$client_id;
        if ($client_id === Context::$client_id) {
            return static::closeCurrentClient($message);
        }
        return is_array(self::toClient($client_id, Envelope::OP_CLOSE, '', (string)$message));
    }

    public static function closeCurrentClient($message = null)
    {
        return is_array(self::toClient(self::current(__FUNCTION__), Envelope::OP_CLOSE, '', (string)$message));
    }

    /** Closes the client at once, sending nothing (GatewayWorker's spelling). */
    public static function destoryClient($client_id)
    {
        $client_id = (string)$client_id;
        if ($client_id === Context::$client_id) {
            return static::destoryCurrentClient();
        }
        return is_array(self::toClient($client_id, Envelope::OP_DESTROY));
    }

    public static function destoryCurrentClient()
    {
        return is_array(self::toClient(self::current(__FUNCTION__), Envelope::OP_DESTROY));
    }

    /**
     * Accepts a pending client (a gateway started with --auth-pending, see
     * docs/clients.md): broadcasts reach it from now on, and it may join
     * groups; $uid, if not empty, is bound at once. True if it was connected.
     */
    public static function acceptClient($client_id, $uid = '')
    {
        $uid = (string)$uid;
        if ($uid !== '') {
            Api::checkName($uid);
        }
        return is_array(self::toClient((string)$client_id, Envelope::OP_ACCEPT, $uid));
    }

    /** Sends $message (if not null) to a pending client and closes it with close code 4502: true if it was connected. */
    public static function rejectClient($client_id, $message = null)
    {
        return is_array(self::toClient((string)$client_id, Envelope::OP_REJECT, '', (string)$message));
    }

    /** Binds the client to $uid, replacing its uid. Returns once the gateway has done it. */
    public static function bindUid($client_id, $uid)
    {
        self::membership($client_id, Envelope::OP_BIND_UID, $uid);
    }

    public static function unbindUid($client_id, $uid)
    {
        self::membership($client_id, Envelope::OP_UNBIND_UID, $uid);
    }

    /** Adds the client to $group: once it returns, sends to the group reach the client. */
    public static function joinGroup($client_id, $group)
    {
        self::membership($client_id, Envelope::OP_JOIN_GROUP, $group);
    }

    public static function leaveGroup($client_id, $group)
    {
        self::membership($client_id, Envelope::OP_LEAVE_GROUP, $group);
    }

    /** Every member of $group leaves it; the clients stay connected. false for an empty group name. */
    public static function ungroup($group)
    {
        if (!self::validGroup($group)) {
            return false;
        }
        self::call(static fn (Api $a) => $a->ungroup((string)$group));
    }

    /**
     * Sends $message to the clients bound to $uid (a uid or a list). Recoverable
     * ($recoverable, or a uid matching a "u:" pattern of static::$recoverable):
     * stored in the history stream, so that clients that reconnect get it, and
     * returning once stored (HistoryUnavailableException without a stream).
     */
    public static function sendToUid($uid, $message, $raw = false, bool $recoverable = false)
    {
        $uids = array_filter(array_map('strval', (array)$uid), static fn (string $u): bool => $u !== '');
        self::call(static function (Api $a) use ($uids, $message, $recoverable): void {
            foreach ($uids as $u) {
                $a->sendToUid($u, (string)$message, $recoverable || self::isRecoverable("u:$u"));
            }
        });
    }

    /**
     * Sends $message to the members of $group (a group or a list) but
     * $exclude_client_id. false for an empty group. A client in several of
     * the listed groups receives it once per group. Recoverable as sendToUid
     * says, with "g:" patterns.
     */
    public static function sendToGroup($group, $message, $exclude_client_id = null, $raw = false, bool $recoverable = false)
    {
        if (!self::validGroup($group)) {
            return false;
        }
        $exclude = $exclude_client_id ? array_map('strval', (array)$exclude_client_id) : [];
        self::call(static function (Api $a) use ($group, $message, $exclude, $recoverable): void {
            foreach ((array)$group as $g) {
                $a->sendToGroup((string)$g, (string)$message, $exclude, $recoverable || self::isRecoverable("g:$g"));
            }
        });
    }

    /**
     * The recoverable pushes to a uid or group ($kind 'uid' or 'group') stored
     * after position $since ('' for all), at most $limit (1 to 1000):
     * ['messages' => [['pos' => .., 'data' => .., 'frame' => ..], ...], 'complete' => bool].
     * complete is false when the history no longer reaches back to $since.
     *
     * @throws HistoryUnavailableException no JetStream, or no history stream
     * @throws \InvalidArgumentException a bad kind, name, position or limit
     */
    public static function getHistory(string $kind, string $name, string $since = '', int $limit = 100): array
    {
        return self::call(static fn (Api $a) => $a->history($kind, $name, $since, $limit));
    }

    /** Whether $channel ("u:<uid>", "g:<group>") matches a pattern of static::$recoverable (Go's path.Match globs). */
    private static function isRecoverable(string $channel): bool
    {
        foreach (static::$recoverable as $pattern) {
            if (fnmatch((string)$pattern, $channel, FNM_PATHNAME)) {
                return true;
            }
        }
        return false;
    }

    /** Replaces the session with an already encoded one (Envelope::encodeSession): true if the client is connected. */
    public static function setSocketSession($client_id, $session_str)
    {
        return is_array(self::toClient((string)$client_id, Envelope::OP_SET_SESSION, '', (string)$session_str));
    }

    /** Replaces the client's session (and $_SESSION, for the current client). */
    public static function setSession($client_id, array $session)
    {
        $client_id = (string)$client_id;
        if ($client_id === Context::$client_id) {
            $_SESSION = $session;
            Context::$old_session = $session;
        }
        static::setSocketSession($client_id, Envelope::encodeSession($session));
    }

    /**
     * Merges $session into the client's session with array_replace_recursive
     * (and into $_SESSION, for the current client). A merge of scalars only
     * is done by the gateway, atomically; one with nested arrays or nulls
     * reads the session, merges it here and writes it back.
     */
    public static function updateSession($client_id, array $session)
    {
        $client_id = (string)$client_id;
        if ($client_id === Context::$client_id) {
            $_SESSION = array_replace_recursive((array)($_SESSION ?? []), $session);
            Context::$old_session = $_SESSION;
            static::setSocketSession($client_id, Envelope::encodeSession($_SESSION));
            return;
        }
        foreach ($session as $v) {
            if ($v === null || is_array($v)) {
                $old = static::getSession($client_id);
                if (is_array($old)) {
                    static::setSocketSession($client_id, Envelope::encodeSession(array_replace_recursive($old, $session)));
                }
                return;
            }
        }
        self::toClient($client_id, Envelope::OP_UPDATE_SESSION, '', Envelope::encodeSession($session));
    }

    /** The client's session: an array, null if the client is not connected, false if $client_id is not a client id. */
    public static function getSession($client_id)
    {
        $r = self::toClient((string)$client_id, Envelope::OP_GET_SESSION);
        if ($r === false || $r === null) {
            return $r;
        }
        return Envelope::decodeSession($r['b']);
    }

    /** Kept for GatewayWorker code that calls it; the BusinessWorker shares its connection through setConnection. */
    public static function setBusinessWorker($business_worker_instance)
    {
    }

    /** A command about one client: its Reply, null if the client is gone, false if the id is not a client id. */
    private static function toClient(string $clientId, int $op, string $name = '', string $body = '', int $frame = Envelope::FRAME_DEFAULT): array|null|false
    {
        if (Api::gatewayOf($clientId) === null) {
            return false;
        }
        return self::call(static fn (Api $a) => $a->toClient($clientId, $op, $name, $body, $frame));
    }

    private static function membership($client_id, int $op, $name): void
    {
        $name = (string)$name;
        if ($name === '') {
            return; // GatewayWorker's gateway ignores an empty uid or group
        }
        Api::checkName($name);
        self::toClient((string)$client_id, $op, $name);
    }

    private static function current(string $method): string
    {
        if (Context::$client_id === null) {
            throw new NatsException("Gateway::$method needs a current client: call it from a worker's event handler (Context::\$client_id is not set)");
        }
        return Context::$client_id;
    }

    private static function validGroup($group): bool
    {
        return !empty($group);
    }

    /** The merged items of a list query over one or more names ("" for queries without a name). */
    private static function itemsOf(string $query, array $names): array
    {
        $items = self::call(static function (Api $a) use ($query, $names): array {
            $all = [];
            foreach ($names as $n) {
                array_push($all, ...$a->items($query, (string)$n));
            }
            return $all;
        });
        self::noteMissing($query);
        $items = array_values(array_unique($items));
        sort($items, SORT_STRING);
        return $items;
    }

    /** group => [item => item] for every group, from one list query per group. */
    private static function perGroup(string $query): array
    {
        $out = [];
        foreach (self::itemsOf('group_list', ['']) as $g) {
            $items = self::itemsOf($query, [$g]);
            if ($items !== []) {
                $out[$g] = self::keyed($items);
            }
        }
        return $out;
    }

    /** GatewayWorker's shape for lists: [item => item]. */
    private static function keyed(array $items): array
    {
        return $items === [] ? [] : array_combine($items, $items);
    }

    /** A query some gateway did not answer returns what came, as GatewayWorker does, and says so. */
    private static function noteMissing(string $what): void
    {
        if (self::$lastMissing !== []) {
            trigger_error("Gateway: $what: partial answer, gateways " . implode(',', self::$lastMissing) . ' did not answer', E_USER_WARNING);
        }
    }
}
