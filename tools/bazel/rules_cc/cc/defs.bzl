"""Local stand-in for @rules_cc//cc:defs.bzl: re-exports Bazel's native C++ rules.

Debian's bazel-bootstrap 4.2.3 needs a @rules_cc repository to load @bazel_tools, but would
download it; Debian's own bazel-rules-cc package does not work with 4.2.3. This project has no
C++ code, so the native rules suffice. Wired in by tools/bazel/write_bazelrc.sh.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
