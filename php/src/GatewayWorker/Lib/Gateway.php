<?php

declare(strict_types=1);

namespace GatewayWorker\Lib;

use GatewayWorker\Nats\GatewayConfig;
use GatewayWorker\Nats\StaticGateway;

/**
 * GatewayWorker 4.0's static API for business code (Events.php), over
 * gatewayworker's NATS protocol. See php/README.md for what differs.
 */
class Gateway extends StaticGateway
{
    use GatewayConfig;
}
