// drdrill builds the flux CLI from the Go module proxy with this file in place of
// cmd/flux/manifests.embed.go (in a local copy of the module): the zip lacks the generated
// manifests/ folder that file embeds (flux2's Makefile renders it with kustomize). The
// benchmark only reads objects with this binary (get --watch, resume's wait); `flux install`
// and `flux bootstrap` need --manifests with this build.

package main

import "errors"

func writeEmbeddedManifests(dir string) error {
	return errors.New("this flux binary was built by drdrill without embedded manifests " +
		"(the Go module zip has none): pass --manifests, or use a release binary")
}
