//! The manifest file exactly as written: serde types with `deny_unknown_fields`, whose doc
//! comments become the descriptions of the file format's JSON Schema.

use std::{borrow::Cow, fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::Value;

/// A tool manifest exactly as written in `tools/<name>.toml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "offstage tool manifest")]
pub struct RawManifest {
    /// The tool's name as models see it; must equal the file name without `.toml`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{1,47}$"))]
    pub name: String,
    /// What the tool does and when to use it, written for a voice model.
    pub description: String,
    /// `inline` (default): the answer comes while the model waits. `job`: the call returns at
    /// once with a job handle and the result is pushed later.
    #[serde(default)]
    pub mode: RawMode,
    /// Time allowed for one call, retries included, e.g. "8s". Default 10s inline, 60s job; at
    /// most 30s inline, 5m job.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String", example = "8s")]
    pub timeout: Option<Duration>,
    /// How many calls of this tool may run at once. Unlimited if absent.
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Retries after a transient failure (connection error, 408, 429, 5xx; exit code 75 for
    /// commands), within `timeout`. Only for idempotent calls: GET or HEAD, or
    /// `annotations.idempotent = true`. Default 0.
    #[serde(default)]
    #[schemars(range(max = 5))]
    pub retries: u32,
    /// The profiles this tool asks to be served in when `offstage.toml` does not list them:
    /// `voice` (the default profile: tools that ask for it get its room first) or `extra`.
    /// Without it the tool is in `voice` if there is room, else in `extra`; `offstage tools
    /// check` says where it went. Profiles listed under `[tools.profiles]` hold what they list.
    #[serde(default)]
    pub profiles: Vec<RawProfile>,
    /// Hints for clients deciding about approval. All false by default, except `open_world`,
    /// which is true for `[http]` tools.
    #[serde(default)]
    pub annotations: RawAnnotations,
    /// The arguments, in the order models should see them: `[params.<name>]` tables.
    #[serde(default)]
    pub params: OrderedTable<RawParam>,
    /// Speakable lines, as templates.
    #[serde(default)]
    pub say: RawSay,
    /// Run the tool as one HTTP request. Exactly one of `[http]` and `[command]`.
    pub http: Option<RawHttp>,
    /// Run the tool as one local program (no shell). Exactly one of `[http]` and `[command]`.
    pub command: Option<RawCommand>,
}

/// How a manifest tool runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    /// Answers while the caller waits.
    #[default]
    Inline,
    /// Answers at once with a job handle; the result is pushed later.
    Job,
}

/// A profile a manifest may ask for: the ones the budget rule fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawProfile {
    /// The default profile, served at `/mcp`.
    Voice,
    /// What the default profile has no room for, served at `/mcp/extra`.
    Extra,
}

impl RawProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            RawProfile::Voice => "voice",
            RawProfile::Extra => "extra",
        }
    }
}

/// MCP tool annotations; unset ones take the defaults described on `annotations`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAnnotations {
    /// The tool changes nothing anywhere.
    pub read_only: Option<bool>,
    /// The tool may delete or overwrite something.
    pub destructive: Option<bool>,
    /// Calling twice with the same arguments does no more than calling once.
    pub idempotent: Option<bool>,
    /// The tool reaches beyond this server (the internet, other people's data).
    pub open_world: Option<bool>,
}

/// One parameter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    /// The JSON type of the value.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What the value means, in a few words (models read this).
    pub description: Option<String>,
    /// Whether the model must pass it. Default false.
    #[serde(default)]
    pub required: bool,
    /// The value used when the model leaves an optional parameter out.
    pub default: Option<Value>,
    /// The only values allowed (strings match case-insensitively).
    #[serde(rename = "enum")]
    pub choices: Option<Vec<Value>>,
    /// Smallest allowed value (integer and number).
    pub min: Option<f64>,
    /// Largest allowed value (integer and number).
    pub max: Option<f64>,
    /// Longest allowed text in characters (string).
    pub max_length: Option<usize>,
}

/// The JSON type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Text; trimmed before use.
    String,
    /// A whole number (`3.0` is accepted as `3`).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
}

/// Speakable lines. Each is a template over the arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSay {
    /// Said when a job starts (job mode), e.g. "Searching the web for {{ query }}."
    pub started: Option<String>,
    /// Said with the result; can also use `result`.
    pub finished: Option<String>,
    /// Said when the call fails; can also use `error`, the failure as a sentence.
    pub failed: Option<String>,
}

/// One HTTP request. Every string is a template (docs/manifests.md, "Templates").
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// The request method. Default GET.
    #[serde(default)]
    pub method: HttpMethod,
    /// An `http://` or `https://` URL. Parameters in the path need `| urlencode`; prefer `query`.
    pub url: String,
    /// Query parameters, appended to the URL and encoded. An entry that renders to nothing
    /// (`{{ optional_param }}` left out) is dropped; a list repeats the key.
    #[serde(default)]
    pub query: OrderedTable<Value>,
    /// Request headers. Values containing line breaks after rendering are refused.
    #[serde(default)]
    pub headers: OrderedTable<String>,
    /// A JSON body: this table rendered value by value. A string that is exactly
    /// `{{ expr }}` keeps the JSON type of `expr`.
    pub body: Option<Value>,
    /// What to keep of a JSON response: a JSON pointer ("/current"), or a table of name =
    /// pointer. The whole body if absent.
    pub result: Option<ResultSpec>,
    /// Larger responses are refused. Default 1 MiB, at most 8 MiB.
    #[schemars(range(min = 1, max = 8388608))]
    pub max_response_bytes: Option<u64>,
}

/// HTTP request methods a manifest may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One local program, started directly (never through a shell).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// The program: an absolute path, a path relative to the working directory (the folder
    /// holding `tools/`), or a bare name looked up in PATH. Not a template.
    pub program: String,
    /// Arguments; each is a template rendered to exactly one argument, never split or
    /// interpreted by a shell.
    #[serde(default)]
    pub args: Vec<String>,
    /// Secrets passed as environment variables, by name. Besides these the program sees only
    /// PATH, HOME and LANG.
    #[serde(default)]
    pub env: Vec<String>,
    /// What to keep of JSON output (as for `[http]`). Output that is not JSON is the result as
    /// text.
    pub result: Option<ResultSpec>,
    /// More output than this stops the program. Default 1 MiB, at most 8 MiB.
    #[schemars(range(min = 1, max = 8388608))]
    pub max_output_bytes: Option<u64>,
}

/// Which part of a JSON answer is the result.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum ResultSpec {
    /// One JSON pointer, e.g. "/current".
    Pointer(String),
    /// Several: the result is an object with these names, each taken from its pointer.
    Fields(OrderedTable<String>),
}

/// A TOML table that keeps its entries in file order (parameters are shown in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedTable<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedTable<V> {
    fn default() -> Self {
        OrderedTable(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedTable<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for TableVisitor<V> {
            type Value = OrderedTable<V>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    entries.push((key, value));
                }
                Ok(OrderedTable(entries))
            }
        }

        deserializer.deserialize_map(TableVisitor(std::marker::PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for OrderedTable<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Table_of_{}", V::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object", "additionalProperties": generator.subschema_for::<V>() })
    }
}

impl<'de> Deserialize<'de> for ResultSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResultVisitor;

        impl<'de> Visitor<'de> for ResultVisitor {
            type Value = ResultSpec;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON pointer like \"/current\" or a table of name = pointer")
            }

            fn visit_str<E: serde::de::Error>(self, pointer: &str) -> Result<ResultSpec, E> {
                Ok(ResultSpec::Pointer(pointer.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultSpec, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    entries.push((key, value));
                }
                Ok(ResultSpec::Fields(OrderedTable(entries)))
            }
        }

        deserializer.deserialize_any(ResultVisitor)
    }
}
