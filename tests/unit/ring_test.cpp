#include <gtest/gtest.h>
#include "shmbus/shmbus.hpp"
