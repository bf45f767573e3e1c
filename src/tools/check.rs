//! TODO(skeleton): filled in by the compact-schema work.
