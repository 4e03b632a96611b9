# golang:<minor>-bookworm, built here from debian:bookworm-slim and the Go
# toolchain module (golang.org/toolchain) that scripts/images.sh fetched
# through the Go module proxy and verified against the checksum database.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev libssl-dev git \
 && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH GOTOOLCHAIN=local
CMD ["go", "version"]
