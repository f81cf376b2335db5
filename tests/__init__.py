# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
