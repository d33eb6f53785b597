<?php

declare(strict_types=1);

namespace GatewayWorker\Nats;

/**
 * The settings of a static Gateway class (GatewayWorker\Lib\Gateway,
 * GatewayClient\Gateway): each class that uses this trait has its own.
 * They replace GatewayWorker's $registerAddress and $secretKey.
 */
trait GatewayConfig
{
    /** @var string|list<string> NATS server URLs: a lost connection moves to the next. */
    public static string|array $natsUrls = Connection::DEFAULT_URL;
    public static ?string $natsToken = null;
    public static ?string $natsUser = null;
    public static ?string $natsPassword = null;
    /** An nkey seed ("SU..."), for servers that authenticate with nkeys (needs ext-sodium). */
    public static ?string $natsNkeySeed = null;
    /** true, or the "ssl" stream context options (cafile, local_cert, local_pk, ...). */
    public static bool|array $natsTls = false;
    /** The deployment's subject prefix (the gateways' --prefix). */
    public static string $prefix = Api::DEFAULT_PREFIX;
    /** Seconds a command about one client waits for its gateway. */
    public static float $requestTimeout = 2.0;
    /** Seconds a query waits for gateways that do not answer. */
    public static float $queryTimeout = 1.0;
    /** Seconds to connect to one NATS server. */
    public static float $connectTimeout = 2.0;
    /** false: close the NATS connection after every call. */
    public static bool $persistentConnection = true;
    /** true: a query some gateway did not answer throws PartialAnswerException; false: it returns what came, with a warning. */
    public static bool $strictQueries = false;
    /**
     * Channels whose sends are recoverable without recoverable: true, as name
     * patterns: "u:chat-*" (uids), "g:room-*" (groups); globs as Go's path.Match
     * (* and ? do not match "/"), like the workers' --recoverable.
     *
     * @var list<string>
     */
    public static array $recoverable = [];
    /** GatewayWorker's settings, accepted so that old configuration code runs, and ignored. */
    public static string|array $registerAddress = '';
    public static string $secretKey = '';

    protected static ?Api $api = null;
}
