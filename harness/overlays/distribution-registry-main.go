// drdrill builds CNCF distribution's registry from the Go module proxy with this file in
// place of cmd/registry/main.go (in a local copy of the module): the drill's mirror stores
// on the local filesystem only, and the upstream main also links the Azure, GCS, S3 and
// CloudFront drivers, whose SDKs more than double the build on a 2-core machine.

package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	// nolint:errcheck
	registry.RootCmd.Execute()
}
