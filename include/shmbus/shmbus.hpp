// shmbus/shmbus.hpp — the whole public API.
#pragma once

#include "shmbus/consumer.hpp"
#include "shmbus/message.hpp"
#include "shmbus/options.hpp"
#include "shmbus/placement.hpp"
#include "shmbus/producer.hpp"
#include "shmbus/status.hpp"
#include "shmbus/topic.hpp"
