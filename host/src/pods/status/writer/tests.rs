use super::*;

fn condition(type_: &str, status: &str) -> PodCondition {
    PodCondition { type_: type_.into(), status: status.into(), ..Default::default() }
}

fn types(s: &PodStatus) -> Vec<(String, String)> {
    s.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect()
}

#[test]
fn other_writers_conditions_stay_where_the_server_has_them() {
    let server = PodStatus {
        conditions: Some(vec![condition("PodScheduled", "True"), condition("example.com/Gate", "True"), condition("Ready", "False")]),
        ..Default::default()
    };
    let generated = PodStatus {
        conditions: Some(vec![condition("Initialized", "True"), condition("Ready", "True"), condition("PodScheduled", "True")]),
        ..Default::default()
    };
    let merged = with_others_conditions(Some(&server), &generated);
    let expected = [("PodScheduled", "True"), ("example.com/Gate", "True"), ("Ready", "True"), ("Initialized", "True")];
    assert_eq!(types(&merged), expected.map(|(t, s)| (t.to_string(), s.to_string())));
    // A kubelet condition the kubelet no longer generates is not kept from the server.
    let fewer = PodStatus { conditions: Some(vec![condition("PodScheduled", "True")]), ..Default::default() };
    assert_eq!(
        types(&with_others_conditions(Some(&server), &fewer)),
        [("PodScheduled", "True"), ("example.com/Gate", "True")].map(|(t, s)| (t.to_string(), s.to_string()))
    );
    assert_eq!(types(&with_others_conditions(None, &generated)), types(&generated));
}
