// parley::Client: the C++ SDK for the Parley API (api/parley/v1).
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Errors: every method returns absl::Status / absl::StatusOr. gRPC statuses
// are converted here with the same code and the server's message kept,
// prefixed with the RPC name ("Send: conversation c_1 not found"). No
// exception leaves the SDK. Local validation failures are InvalidArgument.
//
// Threading: a Client is thread-safe: all methods may be called
// concurrently from any thread (one gRPC channel, HTTP/2 multiplexed).
// Register/LinkDevice update the credentials under a lock. A ReceiveStream
// is owned by one consumer thread (Next/Ack/Close from that thread), except
// Cancel(), which any thread may call.
//
// Ownership: Client::Create returns a unique_ptr. A ReceiveStream shares the
// connection state with its Client and may outlive it. Destroying a stream
// cancels the RPC, flushes pending acks (bounded by ReceiveOptions::
// close_timeout) and joins its threads: it never hangs on the network.
//
// Secrets: the device token is sent only as `authorization: Bearer <token>`
// metadata and never appears in a Status, log line or DebugString. The SDK
// itself logs nothing.
//
// Protection (PRODUCT.md §3): every content message handed to the app is
// labelled from its payload: plain -> transport (server can read), ciphertext
// -> end-to-end encrypted. Send never sends plaintext into a conversation
// whose mode is E2EE, nor into one this profile has ever seen as E2EE
// (sticky, persisted in the profile directory) unless a SecurityVerifier
// accepts the downgrade. With an E2eeEngine (ConnectOptions::e2ee; the CLI
// uses SignalEngine) sends into E2EE conversations are encrypted per device
// and received ciphertexts are decrypted; without one, sending to an E2EE
// conversation returns UNIMPLEMENTED.
//
// Downgrade protection: when the profile has a pinned server statement key
// (Profile::server_signing_key, saved by Register / LinkDevice; older
// profiles have none and are not protected this way) and ConnectOptions::
// verifier is null, the Client creates a StatementVerifier over the profile
// directory (statement_verifier()). Every SecurityState received
// (GetConversation, ListConversations, CreateDirect/Group, AddMembers,
// RequestSecurityChange, SecurityChange old/new states on the stream) is
// Observe'd first:
//   - forged / unverifiable (PERMISSION_DENIED): not used to update the
//     Client's view; unary calls fail with PERMISSION_DENIED naming the
//     conversation; on a stream the event carries unverifiable_state and
//     security_warning;
//   - replays (FAILED_PRECONDITION, an older epoch): ignored silently.
// Ciphertext messages are E2EE evidence (NoteE2eeEvidence). Plaintext Sends
// need CheckPlaintextAllowed: into a conversation once E2EE only after a
// verified newer non-E2EE statement (SendResult::downgrade_warning is then
// set: the app must tell the user the server can read the message), and
// never with Profile::refuse_downgrade.
#ifndef PARLEY_CLIENTS_SDK_CLIENT_H_
#define PARLEY_CLIENTS_SDK_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients/sdk/display.h"
#include "clients/sdk/franking_store.h"
#include "clients/sdk/profile.h"
#include "clients/sdk/statement_verifier.h"
#include "parley/v1/common.pb.h"
#include "parley/v1/parley.pb.h"

namespace parley {

// ------------------------------------------------------ extension points
// E2eeEngine: the end-to-end encryption layer (SignalEngine in
// clients/sdk/signal_engine.h implements it over clients/crypto). A Client
// without one refuses E2EE sends and shows ciphertexts as undecryptable.
// SecurityVerifier: verifies signed security statements (downgrades).

// What an E2eeEngine may ask of the Client it works for: who this device is
// and the KeyService RPCs, authorized as this device. Each call is a
// blocking RPC bounded by ConnectOptions::deadline. Thread-safe.
class E2eeHost {
 public:
  virtual ~E2eeHost() = default;
  virtual std::string account_id() const = 0;
  virtual uint32_t device_id() const = 0;
  // KeyService.UploadKeys (at most 100 one-time pre-keys per call).
  virtual absl::Status UploadKeys(const v1::UploadKeysRequest& request) = 0;
  // KeyService.GetPreKeyCount: one-time pre-keys left on the server.
  virtual absl::StatusOr<uint32_t> PreKeyCount() = 0;
  // KeyService.FetchBundles: one bundle per device of `account_id` with
  // published keys (this device excluded), each consuming one one-time
  // pre-key. Empty (not an error) when the account has no such device.
  virtual absl::StatusOr<std::vector<v1::PreKeyBundle>> FetchBundles(
      const std::string& account_id) = 0;
};

// A contact device presented a different identity key than the one stored
// ("safety number changed"). See clients/crypto/crypto.h, Identity policy.
struct IdentityChangeNotice {
  std::string account_id;
  uint32_t device_id = 0;
  bool was_verified = false;  // the contact had been marked verified
  // The new key was refused (verified contact): its messages cannot be
  // exchanged until the user accepted the new safety number.
  bool blocked = false;
};

// The content of an end-to-end encrypted message (what is inside the
// ciphertext; wire format: InnerEnvelope in clients/sdk/e2ee_format.h).
struct E2eeContent {
  std::string content_type = "text/plain";
  std::string content;
  // Message franking (api/parley/franking/franking.h). Encrypt: the
  // message's fresh key and the sender's timestamp, put into every device's
  // inner envelope. Decrypt: what the envelope carried (empty / 0 when the
  // sender sent none); `committed_content_type` is the envelope's
  // content_type verbatim (content_type defaults an empty one to
  // text/plain), which is what the sender committed to.
  std::string franking_key;  // secret
  int64_t sent_at_ms = 0;
  std::string committed_content_type;
};

// Encrypts/decrypts message bodies with the Signal protocol. Called from
// the threads that call Send / the streams' reader threads; an
// implementation must be thread-safe. Never logs content or keys.
class E2eeEngine {
 public:
  virtual ~E2eeEngine() = default;
  // Publishes this device's keys when needed: everything on first use (or
  // with `force`, after Register / LinkDevice), a new signed pre-key when
  // the current one is due for rotation, and new one-time pre-keys when the
  // server holds few. Cheap when nothing is due.
  virtual absl::Status MaintainKeys(E2eeHost& host, bool force) = 0;
  // One ciphertext for every device of every member of `conversation` this
  // engine knows (this device excluded), creating sessions as needed.
  virtual absl::StatusOr<v1::EncryptedBody> Encrypt(
      E2eeHost& host, const v1::Conversation& conversation,
      const E2eeContent& content) = 0;
  // The server refused a body with `mismatch`: drop sessions of extra and
  // stale devices, build sessions with missing and stale ones. Encrypt is
  // called again afterwards.
  virtual absl::Status RepairSessions(E2eeHost& host,
                                      const v1::DeviceMismatch& mismatch) = 0;
  // The server accepted `body` (from Encrypt) for `conversation`.
  virtual void Sent(const v1::Conversation& /*conversation*/,
                    const v1::EncryptedBody& /*body*/) {}
  // Decrypts a received ciphertext payload addressed to this device.
  // AlreadyExists: a replay of a message already decrypted (drop it).
  virtual absl::StatusOr<E2eeContent> Decrypt(E2eeHost& host,
                                              const v1::Message& message) = 0;
  // Identity changes observed since the last call, oldest first.
  virtual std::vector<IdentityChangeNotice> TakeIdentityChanges() {
    return {};
  }
};

// Verifies server-signed security statements (SecurityState.signed_statement)
// and decides whether a conversation this device saw as E2EE may now be
// treated as server-readable.
class SecurityVerifier {
 public:
  virtual ~SecurityVerifier() = default;
  // OK only if `current` is a verified statement, newer than the E2EE state
  // this device saw, and the user was shown the change and accepted it.
  virtual absl::Status VerifyDowngrade(const std::string& conversation_id,
                                       const v1::SecurityState& current) = 0;
};

// ------------------------------------------------------------- options

struct ConnectOptions {
  // gRPC target "host:port".
  std::string server = "127.0.0.1:7443";
  // PEM file of the CA to trust (parleyd generates <data_dir>/tls/ca.pem).
  // Required unless `insecure`.
  std::string ca_file;
  // Plaintext gRPC. Refused unless `server` is a loopback address.
  bool insecure = false;
  // Deadline of each unary call (each attempt, for retried Sends).
  absl::Duration deadline = absl::Seconds(10);
  // Send retries on UNAVAILABLE / DEADLINE_EXCEEDED with the same
  // client_message_id (the server deduplicates). Total attempts, >= 1.
  int send_max_attempts = 5;
  absl::Duration send_initial_backoff = absl::Milliseconds(200);
  absl::Duration send_max_backoff = absl::Seconds(3);
  // Connection liveness while calls are in flight (gRPC keepalive): with a
  // Receive stream open and nothing else moving, the SDK pings the server
  // every keepalive_time and drops the connection if a ping is not
  // answered within keepalive_timeout; the Receive stream then reconnects.
  // Without it, a connection lost without a close (network change, an
  // expired NAT entry) would leave Receive waiting forever. Zero: no pings.
  // parleyd accepts pings every 10 s or less often by default
  // (--min-client-ping-interval-ms); a shorter interval than the server's
  // gets the connection closed with GOAWAY "too_many_pings".
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // End-to-end encryption (e.g. SignalEngine::Create(<profile>/e2ee)).
  // Null: E2EE sends are refused, ciphertexts are shown undecryptable.
  std::shared_ptr<E2eeEngine> e2ee;
  // Session repairs (DeviceMismatch: re-encrypt and retry with the same
  // client_message_id) allowed per E2EE Send.
  int max_session_repairs = 3;
  // Where received E2EE messages are kept for reports (message franking).
  // Null: <profile dir>/franking when the profile has a directory, none
  // otherwise (then received messages cannot be reported with a reveal).
  std::shared_ptr<FrankingStore> franking_store;
  // Verifies downgrades. Null: with a pinned key in the profile, the Client
  // uses its own StatementVerifier (see the top of this file); without one,
  // plaintext into a conversation seen as E2EE is refused.
  std::shared_ptr<SecurityVerifier> verifier;
};

// Checks `options` without touching the network: server non-empty, a CA
// file unless insecure, insecure only for loopback, positive deadline,
// keepalive times in range (whole milliseconds up to 24 days).
absl::Status ValidateConnectOptions(const ConnectOptions& options);

// A new client message id, 32 lowercase hex characters: the current Unix
// time in milliseconds (48 bits, 12 characters) followed by 80 random bits
// (20 characters), like a UUIDv7. The ids one device makes sort in the order
// they were made (across milliseconds), so the server's idempotency records
// for a device are appended at the end of its key range instead of at random
// places (BENCHMARKS.md, nineteenth round). The time part tells the server
// no more than a Send's arrival already does; the random part keeps ids of
// the same millisecond unique.
std::string NewClientMessageId();

// ------------------------------------------------------------- results

struct Registration {
  v1::Account account;
  v1::Device device;
  // With an E2eeEngine: whether this device's E2EE keys were published. The
  // registration stands either way; keys are published again on first use.
  absl::Status keys_status;
};

struct DeviceLink {
  std::string code;  // single use
  int64_t expires_at_ms = 0;
};

struct DirectConversation {
  v1::Conversation conversation;
  bool created = false;  // false: the pair's existing conversation
};

struct SendResult {
  std::string conversation_id;
  std::string client_message_id;
  uint64_t seq = 0;
  int64_t server_time_ms = 0;
  bool duplicate = false;  // the server had already accepted this id
  int attempts = 1;
  Protection protection = Protection::kTransport;
  // E2EE: DeviceMismatch repairs needed before the server accepted it.
  int session_repairs = 0;
  // E2EE: identity changes of recipients noticed while sending.
  std::vector<IdentityChangeNotice> identity_changes;
  // Plaintext sent into a conversation that was end-to-end encrypted before
  // (a verified downgrade): the server can read this message. Apps must
  // show this prominently.
  bool downgrade_warning = false;
};

// Outcome of Client::RequestSecurityChange / EnableE2ee.
struct SecurityChangeResult {
  std::string conversation_id;
  v1::SecurityMode requested_mode = v1::SECURITY_MODE_UNSPECIFIED;
  // The conversation's security state after the request, as the server
  // reports it. When the change happened its epoch is one higher and every
  // member device (this one too) gets a SecurityChange event.
  v1::SecurityState state;
  // The requested protection is in effect now: the mode is E2EE when E2EE
  // was requested, server-readable (transport / opt-in) when turning E2EE
  // off was requested. false while other participants' consent is pending.
  bool in_effect = false;
  // The request was recorded, but more participants must ask too.
  bool pending_consent = false;
  uint32_t consents = 0;           // participants who asked so far
  uint32_t consents_required = 0;  // participants who must ask
};

// Outcome of Client::ReportMessage.
struct ReportResult {
  std::string report_id;
  // The server checked the revealed content against the sender's
  // commitment and its stamp (E2EE messages).
  bool franking_verified = false;
  // A FrankingReveal from the local FrankingStore was sent (the message was
  // received end-to-end encrypted); false: a transport-mode report.
  bool revealed = false;
};

struct HistoryPage {
  std::vector<v1::Message> messages;  // newest first, as the server sends
  bool more = false;
};

// One item handed to the app by a ReceiveStream.
struct Event {
  enum class Kind {
    kMessage,           // content (plain or ciphertext)
    kSecurityChange,    // message.security_change()
    kMembershipChange,  // message.membership_change()
    kBacklogDrained,    // the backlog present at (re)connect was delivered
    kUnknown,           // payload type this SDK does not know
    // A contact device's identity key changed (identity_change); comes
    // before the message that revealed it. delivery_id 0, not acked.
    kIdentityChange,
    kAccessNotice,      // message.access_notice(): staff read content
    kModerationNotice,  // message.moderation_notice()
  };
  Kind kind = Kind::kUnknown;
  uint64_t delivery_id = 0;  // 0 for kBacklogDrained
  v1::Message message;       // empty for kBacklogDrained
  // For kMessage: from the payload (plain -> kTransport, ciphertext ->
  // kEndToEnd). kNone otherwise.
  Protection protection = Protection::kNone;
  // Readable text: a plain text body, or a ciphertext the E2eeEngine
  // decrypted. nullopt otherwise.
  std::optional<std::string> text;
  // A ciphertext that could not be decrypted: why (never contains content
  // or keys). Empty otherwise.
  std::string decrypt_error;
  // kIdentityChange only.
  std::optional<IdentityChangeNotice> identity_change;
  // Decrypted E2EE messages (message franking): the commitment recomputed
  // from the decrypted content matched Message.franking_commitment, so the
  // message can be reported (Client::ReportMessage). When false,
  // `unreportable` says why ("unreportable: franking commitment does not
  // match"): apps show the message with that mark.
  bool reportable = false;
  std::string unreportable;
  // kBacklogDrained: last delivery id of the backlog.
  uint64_t last_delivery_id = 0;
  // A security state in this message (SecurityChange old/new state) failed
  // verification against the pinned server key: it was ignored (the
  // Client's view of the conversation is unchanged). security_warning says
  // why. Apps must show it.
  bool unverifiable_state = false;
  std::string security_warning;

  bool e2ee() const { return protection == Protection::kEndToEnd; }
};

struct ReceiveOptions {
  // Ack each envelope once the app has handled it: an event returned by
  // Next() counts as handled when Next() is called again or the stream is
  // closed/destroyed. Acks are batched. With false, call Ack() yourself.
  bool auto_ack = true;
  size_t ack_batch = 64;
  absl::Duration ack_flush_interval = absl::Milliseconds(200);
  // Events buffered between the network thread and the app. When full, the
  // stream stops reading (gRPC flow control pushes back on the server).
  size_t queue_capacity = 256;
  // Envelopes the server may send in one response when several are waiting
  // (ReceiveRequest.max_batch, at most 256; 0 or 1: one per response). The
  // events are the same either way; batches make a backlog arrive faster.
  uint32_t max_batch = 64;
  // Reconnects after a break with UNAVAILABLE, a server-side CANCELLED or an
  // unexpected clean end,
  // resuming from the server's backlog. Consecutive failed attempts allowed;
  // the count resets once a stream delivers something. 0: never reconnect.
  int max_reconnect_attempts = 8;
  absl::Duration initial_backoff = absl::Milliseconds(250);
  absl::Duration max_backoff = absl::Seconds(10);
  // Upper bound on the final ack flush when the stream closes.
  absl::Duration close_timeout = absl::Seconds(2);
  // Optional: told before each reconnect (called on the network thread).
  std::function<void(const absl::Status& cause, int attempt,
                     absl::Duration delay)>
      on_reconnect;
};

namespace internal {
class Core;
class StreamState;
}  // namespace internal

// A live Receive stream. Create with Client::Receive.
class ReceiveStream {
 public:
  ~ReceiveStream();
  ReceiveStream(const ReceiveStream&) = delete;
  ReceiveStream& operator=(const ReceiveStream&) = delete;

  // The next event, waiting at most `timeout` (absl::InfiniteDuration()
  // allowed). nullopt on timeout. An error is final (the stream could not be
  // kept up: e.g. UNAUTHENTICATED, ABORTED when another Receive for this
  // device took over, UNAVAILABLE after the reconnect attempts, CANCELLED
  // after Cancel/Close) and repeats on later calls. Envelopes whose
  // delivery_id was already handed out in this session are dropped.
  absl::StatusOr<std::optional<Event>> Next(absl::Duration timeout);

  // Queues an ack (batched, sent in the background). For auto_ack=false.
  void Ack(uint64_t delivery_id);

  // Stops the stream: Next returns CANCELLED. Any thread; idempotent.
  void Cancel();
  // Cancel, flush pending acks (bounded) and join the threads. Idempotent;
  // the destructor calls it.
  void Close();

 private:
  friend class Client;
  explicit ReceiveStream(std::shared_ptr<internal::StreamState> state);
  std::shared_ptr<internal::StreamState> state_;
};

class Client {
 public:
  // Validates `options` and prepares the channel (connects lazily).
  // `profile` supplies the credentials (may be unregistered for Register /
  // LinkDevice) and the directory where they are saved.
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      Profile profile, ConnectOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // A copy of the current profile (credentials included: handle with care).
  Profile profile() const;
  const ConnectOptions& options() const;

  // ------------------------------------------------------------ accounts
  // Creates the account and its first device; saves server, ca_file,
  // insecure and the credentials into the profile (FailedPrecondition if
  // the profile is already registered).
  absl::StatusOr<Registration> Register(
      const std::string& username, const std::string& display_name,
      const v1::AccountAttributes& attributes, const std::string& device_name);
  // Adds this profile as a new device of an existing account, using a code
  // from CreateDeviceLink on another device; saves like Register.
  absl::StatusOr<Registration> LinkDevice(const std::string& link_code,
                                          const std::string& device_name);
  absl::StatusOr<DeviceLink> CreateDeviceLink();
  absl::StatusOr<std::vector<v1::Device>> ListDevices();
  absl::Status RemoveDevice(uint32_t device_id);
  absl::StatusOr<v1::Account> GetAccountByUsername(const std::string& username);
  absl::StatusOr<v1::Account> GetAccountById(const std::string& account_id);

  // -------------------------------------------------------- conversations
  absl::StatusOr<DirectConversation> CreateDirect(
      const std::string& peer_username);
  absl::StatusOr<v1::Conversation> CreateGroup(
      const std::string& title, const std::vector<std::string>& usernames);
  absl::StatusOr<v1::Conversation> GetConversation(
      const std::string& conversation_id);
  absl::StatusOr<std::vector<v1::Conversation>> ListConversations();
  absl::StatusOr<v1::Conversation> AddMembers(
      const std::string& conversation_id,
      const std::vector<std::string>& usernames);
  // `account_id` = own id: leave the group.
  absl::Status RemoveMember(const std::string& conversation_id,
                            const std::string& account_id);

  // Asks the server to change the conversation's protection:
  // SECURITY_MODE_E2EE turns end-to-end encryption on; SECURITY_MODE_TRANSPORT
  // or SECURITY_MODE_OPT_IN ask to turn it off (the policy decides which
  // server-readable mode results). The conversation's policy decision says
  // whether participants may do this and whether every participant must
  // consent (then the result has pending_consent until they all asked).
  // Errors: InvalidArgument for an empty id or UNSPECIFIED mode (not sent);
  // from the server, with the "RequestSecurityChange: " prefix,
  // FAILED_PRECONDITION when the policy does not allow the change (the
  // message names rule and revision) or the conversation is already in that
  // mode, NOT_FOUND / PERMISSION_DENIED for conversations the caller is not
  // in. The returned state updates this Client's cached security state; when
  // it says E2EE, the conversation is remembered as seen E2EE in the profile
  // (sticky: see Send). Requesting a downgrade does not lift that
  // stickiness: plaintext stays refused unless the SecurityVerifier accepts.
  absl::StatusOr<SecurityChangeResult> RequestSecurityChange(
      const std::string& conversation_id, v1::SecurityMode mode);

  // RequestSecurityChange(conversation_id, SECURITY_MODE_E2EE): asks to turn
  // end-to-end encryption on. Once the conversation has switched
  // (result.in_effect), every later message in it must be end-to-end
  // encrypted: this Client then never sends plaintext there. Sending needs
  // an E2eeEngine (ConnectOptions::e2ee); without it Send returns
  // UNIMPLEMENTED for the conversation.
  absl::StatusOr<SecurityChangeResult> EnableE2ee(
      const std::string& conversation_id);

  // ------------------------------------------------------------ messaging
  // Sends text. Without `client_message_id` a random one is generated; the
  // same id is retried on UNAVAILABLE / DEADLINE_EXCEEDED (bounded, with
  // backoff). Checks the conversation's security state first (fetched once
  // per Client, then kept current from the responses and events this Client
  // sees): E2EE -> encrypted by the E2eeEngine for every member device
  // (UNIMPLEMENTED without one); seen as E2EE before but now
  // server-readable -> FAILED_PRECONDITION unless the SecurityVerifier
  // accepts the downgrade. Never sends plaintext into E2EE.
  // E2EE sends: when the server refuses the ciphertexts with a
  // DeviceMismatch (a member linked, removed or reinstalled a device), the
  // sessions are repaired and the message re-encrypted and sent again with
  // the same client_message_id, at most ConnectOptions::max_session_repairs
  // times, invisibly to the app (SendResult::session_repairs).
  absl::StatusOr<SendResult> Send(
      const std::string& conversation_id, const std::string& text,
      std::optional<std::string> client_message_id = std::nullopt);
  // Returns how many envelopes the server removed.
  absl::StatusOr<uint32_t> Ack(const std::vector<uint64_t>& delivery_ids);
  // before_seq 0: newest; limit 0: server default (50), at most 500.
  absl::StatusOr<HistoryPage> GetHistory(const std::string& conversation_id,
                                         uint64_t before_seq, uint32_t limit);

  // Reports message `seq` of the conversation to the service's moderators
  // (MessagingService.ReportMessage). When the message is in the franking
  // store (received end-to-end encrypted by this device) its
  // FrankingReveal is sent: the reporter shows the server the decrypted
  // content, which the server checks against the sender's commitment.
  // Otherwise no reveal is sent (transport mode: the server has its copy).
  // Errors: InvalidArgument (empty id, seq 0, unspecified reason, comment
  // over 1000 characters; not sent); FailedPrecondition when the stored
  // message is unreportable (its commitment did not match on receipt);
  // the server's, prefixed "ReportMessage: ".
  absl::StatusOr<ReportResult> ReportMessage(const std::string& conversation_id,
                                             uint64_t seq,
                                             v1::ReportReason reason,
                                             const std::string& comment);
  // The Client's franking store (null without one).
  std::shared_ptr<FrankingStore> franking_store() const;

  // Whether this profile has ever seen the conversation as E2EE.
  bool SeenAsE2ee(const std::string& conversation_id) const;

  // The Client's own StatementVerifier (pinned key in the profile and no
  // ConnectOptions::verifier); null otherwise.
  std::shared_ptr<StatementVerifier> statement_verifier() const;

  // ------------------------------------------------------------------ e2ee
  // E2eeEngine::MaintainKeys: publishes / replenishes this device's keys.
  // FailedPrecondition without an engine.
  absl::Status MaintainE2eeKeys(bool force = false);
  // The KeyService access the engine uses (for engine-specific calls such
  // as SignalEngine::SafetyNumbers). Valid while the Client lives.
  E2eeHost& e2ee_host();

  // --------------------------------------------------------------- receive
  // Opens the device's stream (backlog first, then live). The stream's
  // network thread starts at once; a single Receive per device is expected
  // (a second one ends the first with ABORTED).
  // With an E2eeEngine, ciphertexts are decrypted on the stream's thread
  // (Event::text, or Event::decrypt_error: the stream goes on); replays the
  // ratchet already consumed are acked and dropped; this device's keys are
  // maintained (MaintainKeys) when the stream starts and after pre-key
  // messages.
  absl::StatusOr<std::unique_ptr<ReceiveStream>> Receive(
      ReceiveOptions options = {});

  // Callback style: calls `handler` for each event on the calling thread
  // until `stop` is requested (returns OK), the stream fails (returns its
  // error) or the handler returns an error (returned; that event is not
  // acked). With options.auto_ack an event is acked after its handler
  // returned OK.
  absl::Status Listen(ReceiveOptions options,
                      const std::function<absl::Status(const Event&)>& handler,
                      std::stop_token stop);

 private:
  explicit Client(std::shared_ptr<internal::Core> core);
  // Register / LinkDevice: keeps the new device's credentials in the
  // profile, pins the server's signing key and publishes E2EE keys.
  absl::StatusOr<Registration> AdoptDevice(
      const char* rpc, const v1::Account& account, const v1::Device& device,
      const std::string& device_token, const std::string& server_signing_key,
      const std::string& server_key_id);
  std::shared_ptr<internal::Core> core_;
};

}  // namespace parley

#endif  // PARLEY_CLIENTS_SDK_CLIENT_H_
