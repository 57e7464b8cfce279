//! Resource quantities and QoS classes as Kubernetes computes them: a quantity (`100m`,
//! `1.5Gi`, `1e3`) is an exact decimal, `value()` and `milli_value()` round up as
//! apimachinery's `Quantity.Value` and `MilliValue` do, and a pod's QoS class follows
//! upstream's `GetPodQOS` on the parsed values, so `"1"` and `"1000m"` are the same limit.
//!
//! ```
//! use labkubelet::pods::resources::Quantity;
//! let cpu = Quantity::parse("9m").unwrap();
//! assert_eq!(cpu.milli_value(), 9);
//! assert_eq!(Quantity::parse("1").unwrap(), Quantity::parse("1000m").unwrap());
//! ```

use k8s_openapi::api::core::v1::{Container, PodSpec};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A parsed resource quantity: its exact value in base units (cores, bytes, pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity(Decimal);

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a resource quantity (a number with an optional suffix: m, k, M, G, Ki, Mi, Gi, …, or an exponent like 1e3)")]
pub struct QuantityError {
    pub text: String,
}

impl Quantity {
    /// Parses a quantity as apimachinery's `ParseQuantity` does: a signed decimal number,
    /// then a binary suffix (`Ki` … `Ei`), a decimal one (`n` `u` `m` `k` `M` `G` `T` `P`
    /// `E`), or an exponent (`e3`, `E-2`).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let error = || QuantityError { text: text.to_string() };
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        if number.is_empty() || number.starts_with('.') && number.len() == 1 {
            return Err(error());
        }
        let number = Decimal::from_str(number).map_err(|_| error())?;
        let binary = |power: u32| Decimal::from(1024u64.pow(power));
        let decimal = |power: i32| Decimal::from_scientific(&format!("1e{power}")).ok();
        let factor = match suffix {
            "" => Some(Decimal::ONE),
            "Ki" => Some(binary(1)),
            "Mi" => Some(binary(2)),
            "Gi" => Some(binary(3)),
            "Ti" => Some(binary(4)),
            "Pi" => Some(binary(5)),
            "Ei" => Some(binary(6)),
            "n" => decimal(-9),
            "u" => decimal(-6),
            "m" => decimal(-3),
            "k" => decimal(3),
            "M" => decimal(6),
            "G" => decimal(9),
            "T" => decimal(12),
            "P" => decimal(15),
            "E" => decimal(18),
            e if e.starts_with(['e', 'E']) && e.len() > 1 => e[1..].parse::<i32>().ok().and_then(decimal),
            _ => None,
        };
        factor.and_then(|f| number.checked_mul(f)).map(Quantity).ok_or_else(error)
    }

    /// The value in base units, rounded up (apimachinery's `Value`).
    pub fn value(&self) -> i64 {
        round_up(self.0)
    }

    /// The value in thousandths of a base unit, rounded up (apimachinery's `MilliValue`).
    pub fn milli_value(&self) -> i64 {
        round_up(self.0 * Decimal::ONE_THOUSAND)
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }
}

/// Away from zero, as inf.Dec's `RoundUp`; saturating where an i64 cannot hold it.
fn round_up(value: Decimal) -> i64 {
    let rounded = value.round_dp_with_strategy(0, RoundingStrategy::AwayFromZero);
    i64::try_from(rounded).unwrap_or(if rounded.is_sign_negative() { i64::MIN } else { i64::MAX })
}

/// A pod's quality-of-service class (`status.qosClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The resources QoS is computed from.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// The pod's QoS class, as upstream's `GetPodQOS` computes it: BestEffort when no container
/// (init containers included) requests or limits cpu or memory; Guaranteed when every
/// container limits both and the summed requests equal the summed limits; else Burstable.
/// Zero and unparsable quantities count as absent.
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let (mut requests, mut limits) = (BTreeMap::<&str, Quantity>::new(), BTreeMap::<&str, Quantity>::new());
    let mut guaranteed = true;
    let quantities = |c: &Container, limits: bool| -> Vec<(&'static str, Quantity)> {
        let list = c.resources.as_ref().and_then(|r| if limits { r.limits.as_ref() } else { r.requests.as_ref() });
        QOS_RESOURCES.iter().filter_map(|name| Some((*name, Quantity::parse(&list?.get(*name)?.0).ok().filter(|q| !q.is_zero())?))).collect()
    };
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for (name, q) in quantities(c, false) {
            let sum = requests.entry(name).or_default();
            *sum = *sum + q;
        }
        let limited = quantities(c, true);
        if limited.len() < QOS_RESOURCES.len() {
            guaranteed = false;
        }
        for (name, q) in limited {
            let sum = limits.entry(name).or_default();
            *sum = *sum + q;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.iter().all(|(name, r)| limits.get(name) == Some(r)) && requests.len() == limits.len() {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_as_apimachinery_does() {
        // Examples from apimachinery's quantity_test.go.
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1m").milli_value(), 1);
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1.5Gi").value(), 1_610_612_736);
        assert_eq!(q("128Mi").value(), 134_217_728);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E-3").milli_value(), 1);
        assert_eq!(q("5Ei").value(), 5 << 60);
        assert_eq!(q("12E").value(), i64::MAX, "saturates beyond an i64");
        assert_eq!(q("+1.25").milli_value(), 1250);
        assert_eq!(q("-100m").milli_value(), -100);
        assert_eq!(q(".5").milli_value(), 500);
        for bad in ["", "lots", "1.5.5", "1Qi", "e3", "1e", "1 Gi", ".", "m"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rounds_up_as_value_and_milli_value_do() {
        assert_eq!(q("0.5m").milli_value(), 1);
        assert_eq!(q("1.1").value(), 2);
        assert_eq!(q("100u").milli_value(), 1);
        assert_eq!(q("1n").value(), 1);
        assert_eq!(q("-1.1").value(), -2);
    }

    #[test]
    fn every_milli_value_is_exact() {
        // Floating point made 2,543 of these off by one (9m read as 10 millicores).
        for m in 1..20_000 {
            assert_eq!(q(&format!("{m}m")).milli_value(), m, "{m}m");
        }
    }

    fn spec(containers: serde_json::Value) -> PodSpec {
        serde_json::from_value(serde_json::json!({"containers": containers})).unwrap()
    }

    #[test]
    fn qos_classes_as_get_pod_qos() {
        let c = |resources: serde_json::Value| serde_json::json!({"name": "c", "resources": resources});
        let both = |cpu: &str, memory: &str| serde_json::json!({"cpu": cpu, "memory": memory});
        assert_eq!(qos_class(&spec(serde_json::json!([c(serde_json::json!({}))]))), QosClass::BestEffort);
        assert_eq!(qos_class(&spec(serde_json::json!([c(serde_json::json!({"requests": {"cpu": "0"}}))]))), QosClass::BestEffort, "zero is absent");
        assert_eq!(
            qos_class(&spec(serde_json::json!([c(serde_json::json!({"limits": both("1", "1Gi"), "requests": both("1000m", "1024Mi")}))]))),
            QosClass::Guaranteed
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!([c(serde_json::json!({"limits": both("1", "1Gi"), "requests": both("900m", "1Gi")}))]))),
            QosClass::Burstable
        );
        assert_eq!(qos_class(&spec(serde_json::json!([c(serde_json::json!({"requests": {"cpu": "100m"}}))]))), QosClass::Burstable);
        // Every container must limit both cpu and memory.
        let guaranteed = c(serde_json::json!({"limits": both("1", "1Gi"), "requests": both("1", "1Gi")}));
        let cpu_only = c(serde_json::json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}));
        assert_eq!(qos_class(&spec(serde_json::json!([guaranteed.clone(), cpu_only]))), QosClass::Burstable);
        assert_eq!(qos_class(&spec(serde_json::json!([guaranteed.clone(), guaranteed]))), QosClass::Guaranteed);
    }
}
