//! Off-the-shelf gRPC tools can talk to the node: standard health checking and server
//! reflection (both v1 and the v1alpha that many tools still use) answer on the same port
//! as the ledger.

use cercle_e2e::Node;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Lists the services through server reflection of version `$version` (`v1`, `v1alpha`),
/// with that version's own client: the two are distinct gRPC services with distinct types.
macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new($channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses =
            reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
        let response = responses.message().await.unwrap().expect("a reflection response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response: {response:?}");
        };
        list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::init_and_start(&tmp.path().join("data"), &[]);

    let channel = tonic::transport::Channel::from_shared(node.url()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest { service: "cercle.v1.Ledger".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    for names in [list_services!(v1, channel.clone()), list_services!(v1alpha, channel)] {
        assert!(names.contains(&"cercle.v1.Ledger".to_string()), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
    }
    node.stop();
}
