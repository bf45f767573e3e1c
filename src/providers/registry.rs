//! What the one list of providers (the `registry!` call in `providers/mod.rs`) turns into.
//! Each line names a provider's module, which is also its `[providers.<name>]` table, and its
//! provider type, which implements [`ProviderSpec`](super::ProviderSpec); from it come the module itself, the settings struct
//! configuration reads, the names `provider` and `fallback` accept, the environment variables
//! merged in, what `auto` picks, and the checks and construction of whatever is routed to.
//!
//! Adding a provider: its folder under `providers/`, one line in the list, one row in the
//! provider contract table of the tests (docs/providers.md, "Add a provider").

/// What `provider = "auto"` falls back to when no provider asks for it: needs nothing.
pub const OFFLINE: &str = "sketch";

macro_rules! registry {
    ($($name:ident :: $spec:ident),+ $(,)?) => {
        $(pub mod $name;)+

        use $crate::providers::spec::EnvVar;

        /// Settings of every provider, one table each; only those routed to are used, but
        /// all are checked.
        #[derive(
            Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq,
            schemars::JsonSchema,
        )]
        #[serde(deny_unknown_fields, default)]
        pub struct ProvidersConfig {
            $(
                #[doc = concat!("`[providers.", stringify!($name), "]`")]
                pub $name: <$name::$spec as ProviderSpec>::Settings,
            )+
        }

        /// Every provider's name, in the registry's order.
        pub const NAMES: &[&str] = &[$(<$name::$spec as ProviderSpec>::NAME),+];

        impl ProvidersConfig {
            /// The registered name equal to `name` (any case, trimmed), as the registry's
            /// own `&'static str`.
            pub fn name(name: &str) -> Option<&'static str> {
                let name = name.trim().to_ascii_lowercase();
                NAMES.iter().copied().find(|known| *known == name)
            }

            /// What `auto` picks: the first provider that asks for it, else
            /// [`registry::OFFLINE`].
            pub fn auto(&self) -> &'static str {
                $(
                    if <$name::$spec as ProviderSpec>::auto(&self.$name) {
                        return <$name::$spec as ProviderSpec>::NAME;
                    }
                )+
                registry::OFFLINE
            }

            /// Every provider's own checks, routed to or not, so a typo fails at start.
            pub fn check(&self) -> Result<(), SetupError> {
                $(<$name::$spec as ProviderSpec>::check(&self.$name)?;)+
                Ok(())
            }

            /// Builds the provider called `name`.
            pub fn build(
                &self,
                name: &str,
                context: &Context,
            ) -> Result<Arc<dyn ImageProvider>, SetupError> {
                $(
                    if name == <$name::$spec as ProviderSpec>::NAME {
                        return Ok(Arc::new(<$name::$spec as ProviderSpec>::build(&self.$name, context)?));
                    }
                )+
                Err(SetupError::Unknown { name: name.to_owned() })
            }

            /// Every variable any provider reads, with the provider's name.
            pub fn env() -> impl Iterator<Item = (&'static str, &'static EnvVar)> {
                let mut all: Vec<(&'static str, &'static EnvVar)> = Vec::new();
                $(
                    let name = <$name::$spec as ProviderSpec>::NAME;
                    all.extend(<$name::$spec as ProviderSpec>::ENV.iter().map(|var| (name, var)));
                )+
                all.into_iter()
            }
        }

        #[cfg(test)]
        mod registered {
            /// The table's name is the provider's name: one spelling for both.
            #[test]
            fn table_names_are_provider_names() {
                $(assert_eq!(stringify!($name), <super::$name::$spec as super::ProviderSpec>::NAME);)+
            }

            /// Every variable fills a setting its provider has.
            #[test]
            fn variables_name_settings() {
                $(
                    let schema =
                        schemars::schema_for!(<super::$name::$spec as super::ProviderSpec>::Settings);
                    for var in <super::$name::$spec as super::ProviderSpec>::ENV {
                        let setting = format!("/properties/{}", var.setting);
                        assert!(schema.pointer(&setting).is_some(), "{}", var.name);
                    }
                )+
            }
        }
    };
}

pub(super) use registry;

#[cfg(test)]
mod tests {
    use super::{
        super::{Context, NAMES, ProvidersConfig, SetupError},
        *,
    };
    use crate::settings::Secret;

    #[test]
    fn names_are_found_in_any_case() {
        assert_eq!(ProvidersConfig::name(" OpenAI "), Some("openai"));
        assert_eq!(ProvidersConfig::name("dall-e"), None);
        assert_eq!(NAMES.first(), Some(&OFFLINE));
    }

    #[test]
    fn auto_is_openai_with_a_key_and_sketch_without() {
        let mut providers = ProvidersConfig::default();
        assert_eq!(providers.auto(), "sketch");
        providers.openai.api_key = Some(Secret::new(" "));
        assert_eq!(providers.auto(), "sketch", "a blank key is no key");
        providers.openai.api_key = Some(Secret::new("sk-1"));
        assert_eq!(providers.auto(), "openai");
        // Keys for the others never make `auto` pick them.
        let mut others = ProvidersConfig::default();
        others.gemini.api_key = Some(Secret::new("g"));
        others.stability.api_key = Some(Secret::new("s"));
        assert_eq!(others.auto(), "sketch");
    }

    #[test]
    fn an_unknown_name_is_not_built() {
        let error = ProvidersConfig::default().build("dall-e", &Context::default()).unwrap_err();
        assert_eq!(error, SetupError::Unknown { name: "dall-e".to_owned() });
    }
}
