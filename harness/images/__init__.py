"""Container images built here, offline: Debian rootfs (debootstrap), docker-archive tarballs
written from local binaries, and the kind node image made of both."""
