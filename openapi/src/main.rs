//! Prints the public API's OpenAPI document (what `docs/openapi.json` holds).

fn main() {
    print!("{}", openapi::rendered());
}
