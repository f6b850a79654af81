#!/usr/bin/env bash
# A self-signed certificate for a trial; a plant puts its own CA's certificate in nginx/tls/.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p tls
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=${1:-qc.plant.local}" \
  -keyout tls/qc.key -out tls/qc.crt
