// Package packaging holds no code: it is the home of what installs redwire
// on an edge host, and of the test that installs it for real.
//
//   - redwire.service: the hardened systemd unit (configs/service_test.go
//     keeps its sandbox).
//   - nfpm.yaml: the .deb; scripts/release.sh (make release) builds it with
//     nfpm, one per architecture.
//   - redwire.yml: the conffile installed as /etc/redwire/redwire.yml.
//   - scripts/: the maintainer scripts (postinst, prerm, postrm).
//
// deb_test.go builds the amd64 .deb through make release, installs it with
// dpkg on the machine running the test (root, as make test and CI run),
// checks what it put where, with which owner and mode, and purges it. It
// refuses to run where a redwire package, user or directory it did not
// make is present, so it never removes a real install.
package packaging
