# The vault image: cardvault and SoftHSM2. On a machine with registry
# access this builds as is; on one without, scripts/images.sh first builds
# the two base images from Debian's packages and the Go module proxy.
FROM golang:1.26-bookworm AS build
# cgo: miekg/pkcs11 loads the PKCS#11 module with dlopen, and client-key RSA
# is OpenSSL's libcrypto (internal/libcrypto), whose headers are libssl-dev
# (the image scripts/images.sh builds has them already); the runtime's
# libssl3 comes with softhsm2.
RUN if [ ! -e /usr/include/openssl/evp.h ]; then \
      apt-get update && apt-get install -y --no-install-recommends libssl-dev && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY . .
# Modules come from the Go module proxy, or from vendor/ where the context
# has one: scripts/images.sh vendors them from the host's verified module
# cache on machines whose containers cannot reach the proxy.
RUN if [ -d vendor ]; then mod=-mod=vendor; else mod=-mod=readonly; go mod download; fi \
 && go build $mod -trimpath -ldflags=-s -o /out/cardvault ./cmd/cardvault

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/cardvault cardvault \
 && mkdir -p /var/lib/cardvault/tokens /var/lib/cardvault/transcripts \
 && chown -R cardvault:cardvault /var/lib/cardvault
COPY --from=build /out/cardvault /usr/local/bin/cardvault
COPY deploy/softhsm2.conf /etc/cardvault/softhsm2.conf
COPY deploy/setup.sh /usr/local/bin/cardvault-setup
# SoftHSM2 is only the default token. For a vendor HSM, mount its PKCS#11
# library and client configuration read-only (-v /opt/vendor:/opt/vendor:ro)
# and set CARDVAULT_PKCS11_URI (module-path, token, pin-source) or
# CARDVAULT_PKCS11_MODULE; `cardvault hsm probe` shows what the vault makes
# of it (docs/hsm.md).
ENV SOFTHSM2_CONF=/etc/cardvault/softhsm2.conf \
    CARDVAULT_LISTEN=0.0.0.0:8080 \
    CARDVAULT_TRANSCRIPT_DIR=/var/lib/cardvault/transcripts
USER cardvault
WORKDIR /var/lib/cardvault
VOLUME ["/var/lib/cardvault/tokens"]
EXPOSE 8080
ENTRYPOINT ["cardvault"]
CMD ["serve"]
