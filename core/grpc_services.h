// gRPC adapters: the only place where grpc::Status appears in core.
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Each adapter authenticates the call from its metadata, calls ParleyService, and
// converts absl::Status to grpc::Status. All use gRPC's callback API: unary
// calls complete inline; Receive is a write reactor woken by the
// DeliveryHub, so idle streams hold no thread; SendStream is a bidi reactor
// that runs each request as a unary Send (one read and one write in flight,
// at most 256 requests read ahead of the answers written).
#ifndef PARLEY_CORE_GRPC_SERVICES_H_
#define PARLEY_CORE_GRPC_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/delivery.h"
#include "core/finisher.h"
#include "core/key_directory.h"
#include "core/service.h"
#include "parley/v1/parley.grpc.pb.h"

namespace parley::core {

grpc::Status ToGrpc(const absl::Status& s);
// The same status as a google.rpc.Status-compatible message (code, message,
// absl payloads as details), e.g. for an error inside a stream.
v1::RpcStatus ToRpcStatus(const absl::Status& s);

class SendStreamReactor;

class AccountGrpc final : public v1::AccountService::CallbackService {
 public:
  explicit AccountGrpc(ParleyService* s) : s_(s) {}
  grpc::ServerUnaryReactor* CreateAccount(grpc::CallbackServerContext*, const v1::CreateAccountRequest*,
                                          v1::CreateAccountResponse*) override;
  grpc::ServerUnaryReactor* GetAccount(grpc::CallbackServerContext*, const v1::GetAccountRequest*,
                                       v1::GetAccountResponse*) override;
  grpc::ServerUnaryReactor* CreateDeviceLink(grpc::CallbackServerContext*, const v1::CreateDeviceLinkRequest*,
                                             v1::CreateDeviceLinkResponse*) override;
  grpc::ServerUnaryReactor* LinkDevice(grpc::CallbackServerContext*, const v1::LinkDeviceRequest*,
                                       v1::LinkDeviceResponse*) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext*, const v1::ListDevicesRequest*,
                                        v1::ListDevicesResponse*) override;
  grpc::ServerUnaryReactor* RemoveDevice(grpc::CallbackServerContext*, const v1::RemoveDeviceRequest*,
                                         v1::RemoveDeviceResponse*) override;

 private:
  ParleyService* s_;
};

class ConversationGrpc final : public v1::ConversationService::CallbackService {
 public:
  explicit ConversationGrpc(ParleyService* s) : s_(s) {}
  grpc::ServerUnaryReactor* CreateDirect(grpc::CallbackServerContext*, const v1::CreateDirectRequest*,
                                         v1::CreateDirectResponse*) override;
  grpc::ServerUnaryReactor* CreateGroup(grpc::CallbackServerContext*, const v1::CreateGroupRequest*,
                                        v1::CreateGroupResponse*) override;
  grpc::ServerUnaryReactor* GetConversation(grpc::CallbackServerContext*, const v1::GetConversationRequest*,
                                            v1::GetConversationResponse*) override;
  grpc::ServerUnaryReactor* ListConversations(grpc::CallbackServerContext*,
                                              const v1::ListConversationsRequest*,
                                              v1::ListConversationsResponse*) override;
  grpc::ServerUnaryReactor* AddMembers(grpc::CallbackServerContext*, const v1::AddMembersRequest*,
                                       v1::AddMembersResponse*) override;
  grpc::ServerUnaryReactor* RemoveMember(grpc::CallbackServerContext*, const v1::RemoveMemberRequest*,
                                         v1::RemoveMemberResponse*) override;
  grpc::ServerUnaryReactor* RequestSecurityChange(grpc::CallbackServerContext*,
                                                  const v1::RequestSecurityChangeRequest*,
                                                  v1::RequestSecurityChangeResponse*) override;

 private:
  ParleyService* s_;
};

// Receive is served as a raw-bytes method (its responses are built around
// the stored payloads without parsing them, core/receive_wire.h); on the
// wire it is the ReceiveRequest/ReceiveResponse method of api/.
class MessagingGrpc final
    : public v1::MessagingService::WithRawCallbackMethod_Receive<v1::MessagingService::CallbackService> {
 public:
  // `finisher` answers the unary Sends that are durable when handled (see
  // finisher.h); it must outlive the gRPC server this service runs in.
  MessagingGrpc(ParleyService* s, DeliveryHub* hub, Finisher* finisher)
      : s_(s), hub_(hub), finisher_(finisher) {}
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext*, const v1::SendRequest*,
                                 v1::SendResponse*) override;
  grpc::ServerBidiReactor<v1::SendStreamRequest, v1::SendStreamResponse>* SendStream(
      grpc::CallbackServerContext*) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Receive(grpc::CallbackServerContext*,
                                                      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext*, const v1::AckRequest*,
                                v1::AckResponse*) override;
  grpc::ServerUnaryReactor* GetHistory(grpc::CallbackServerContext*, const v1::GetHistoryRequest*,
                                       v1::GetHistoryResponse*) override;
  grpc::ServerUnaryReactor* ReportMessage(grpc::CallbackServerContext*, const v1::ReportMessageRequest*,
                                          v1::ReportMessageResponse*) override;

  // Ends every open SendStream with `status` (responses not yet written are
  // dropped: the client retries them by client_message_id) and refuses new
  // ones. Called when the server shuts down. Thread-safe.
  void CloseSendStreams(const absl::Status& status);
  // Called by a SendStream when gRPC is done with it.
  void ForgetSendStream(SendStreamReactor* r);

 private:
  ParleyService* s_;
  DeliveryHub* hub_;
  Finisher* finisher_;
  absl::Mutex send_streams_mu_;
  absl::flat_hash_map<SendStreamReactor*, std::weak_ptr<SendStreamReactor>> send_streams_
      ABSL_GUARDED_BY(send_streams_mu_);
  bool send_streams_closed_ ABSL_GUARDED_BY(send_streams_mu_) = false;
};

// The key directory (KeyDirectory): authenticates through ParleyService.
// Neither is owned; both must outlive the adapter.
class KeyGrpc final : public v1::KeyService::CallbackService {
 public:
  KeyGrpc(ParleyService* s, KeyDirectory* keys) : s_(s), keys_(keys) {}
  grpc::ServerUnaryReactor* UploadKeys(grpc::CallbackServerContext*, const v1::UploadKeysRequest*,
                                       v1::UploadKeysResponse*) override;
  grpc::ServerUnaryReactor* GetPreKeyCount(grpc::CallbackServerContext*, const v1::GetPreKeyCountRequest*,
                                           v1::GetPreKeyCountResponse*) override;
  grpc::ServerUnaryReactor* FetchBundles(grpc::CallbackServerContext*, const v1::FetchBundlesRequest*,
                                         v1::FetchBundlesResponse*) override;

 private:
  ParleyService* s_;
  KeyDirectory* keys_;
};

}  // namespace parley::core

#endif  // PARLEY_CORE_GRPC_SERVICES_H_
