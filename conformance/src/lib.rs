//! crid-conformance (skeleton)
