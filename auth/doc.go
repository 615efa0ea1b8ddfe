// Package auth decides who may use hopper and where they may go: proxy
// accounts (from --auth and htpasswd files with bcrypt entries), a limit on
// failed attempts per client address, and per-account target ACLs with a
// default guard against reaching private networks from outside.
//
// Store implements dial.Authenticator for the front ends; ACL wraps any
// dial.Dialer. The package does not parse protocol credentials (tunnel and
// socks do) nor render refusals (each front end does, per DESIGN.md).
package auth
