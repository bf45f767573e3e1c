//! Jobs: provider routing and fallback, cross-token isolation, surviving restarts, several
//! instances on one database.

mod instances;
mod isolation;
mod restart;
mod routing;
