<?php

declare(strict_types=1);

namespace GatewayClient;

use GatewayWorker\Nats\GatewayConfig;
use GatewayWorker\Nats\StaticGateway;

/**
 * GatewayClient's static API for web apps (PHP-FPM, Laravel, ThinkPHP,
 * webman) and any PHP process that is not a worker: the same methods as
 * GatewayWorker\Lib\Gateway, over NATS. Set Gateway::$natsUrls (and
 * credentials) where GatewayClient set $registerAddress.
 */
class Gateway extends StaticGateway
{
    use GatewayConfig;
}
