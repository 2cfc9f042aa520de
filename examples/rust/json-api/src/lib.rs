//! A `wasi:http/proxy` component that does real work per request: `POST /quote` parses an order
//! (JSON, a few KiB: a customer and a list of lines) and answers a quote (JSON, about the same
//! size: every line priced, discounted and taxed, and the totals). Malformed JSON answers 400
//! with serde's message; `GET /healthz` answers `ok`.
//!
//! `hack/bench.sh http` loads it next to `hello-http`, with the body in
//! `examples/rust/json-api/order.json`.

use serde::{Deserialize, Serialize};
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[derive(Deserialize)]
struct Order {
    customer: String,
    currency: String,
    lines: Vec<OrderLine>,
}

#[derive(Deserialize)]
struct OrderLine {
    sku: String,
    description: String,
    quantity: u32,
    unit_price_cents: u64,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct Quote {
    customer: String,
    currency: String,
    lines: Vec<QuoteLine>,
    item_count: u64,
    subtotal_cents: u64,
    discount_cents: u64,
    tax_cents: u64,
    total_cents: u64,
}

#[derive(Serialize)]
struct QuoteLine {
    sku: String,
    description: String,
    quantity: u32,
    line_cents: u64,
    discount_cents: u64,
    tags: Vec<String>,
}

/// Tax on the discounted subtotal, in basis points.
const TAX_BASIS_POINTS: u64 = 1_900;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match (method.as_str(), path.as_str()) {
        ("POST", "/quote") => {
            let body = request.into_body().bytes_contents().await?;
            match serde_json::from_slice::<Order>(&body) {
                Ok(order) => json(StatusCode::OK, &quote(order)),
                Err(err) => text(StatusCode::BAD_REQUEST, &format!("invalid order: {err}\n")),
            }
        }
        ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
        _ => text(StatusCode::NOT_FOUND, "POST an order to /quote\n"),
    }
}

fn quote(order: Order) -> Quote {
    let lines: Vec<QuoteLine> = order.lines.into_iter().map(price).collect();
    let subtotal_cents = lines.iter().map(|l| l.line_cents).sum();
    let discount_cents = lines.iter().map(|l| l.discount_cents).sum();
    let taxable = subtotal_cents - discount_cents;
    let tax_cents = taxable * TAX_BASIS_POINTS / 10_000;
    Quote {
        customer: order.customer,
        currency: order.currency,
        item_count: lines.iter().map(|l| u64::from(l.quantity)).sum(),
        lines,
        subtotal_cents,
        discount_cents,
        tax_cents,
        total_cents: taxable + tax_cents,
    }
}

/// A line's price; ten or more of a kind take 5 % off, lines tagged `sale` another 10 %.
fn price(line: OrderLine) -> QuoteLine {
    let line_cents = u64::from(line.quantity) * line.unit_price_cents;
    let mut percent = 0;
    if line.quantity >= 10 {
        percent += 5;
    }
    if line.tags.iter().any(|t| t == "sale") {
        percent += 10;
    }
    QuoteLine {
        discount_cents: line_cents * percent / 100,
        sku: line.sku,
        description: line.description,
        quantity: line.quantity,
        line_cents,
        tags: line.tags,
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Result<Response<Body>, Error> {
    let body = serde_json::to_vec(value)?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())?)
}

fn text(status: StatusCode, text: &str) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(text.into())?)
}
