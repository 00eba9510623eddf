// Test support: what a ParleyService is built from, made for real in a
// temporary directory (RocksDB storage, a policy engine on a builtin preset,
// a statement signer), for tests that run the service in process.
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef PARLEY_TESTS_SUPPORT_SERVICE_PARTS_H_
#define PARLEY_TESTS_SUPPORT_SERVICE_PARTS_H_

#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/policy_engine.h"
#include "core/presets.h"
#include "core/service.h"
#include "core/statement.h"
#include "gtest/gtest.h"
#include "storage/rocksdb_storage.h"

namespace parley::testing {

// Owns its directory: removed, after the policy engine and the storage are
// closed, when the parts are destroyed (destroy the service first).
struct ServiceParts {
  std::string dir;
  std::unique_ptr<storage::Storage> storage;
  std::unique_ptr<core::PolicyEngine> policy;
  std::unique_ptr<core::StatementSigner> signer;

  ServiceParts() = default;
  ServiceParts(const ServiceParts&) = delete;
  ServiceParts& operator=(const ServiceParts&) = delete;
  ~ServiceParts() {
    policy.reset();
    storage.reset();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }

  // Deps with the storage, policy and signer set; the caller adds the hub,
  // the franker and anything else.
  core::ParleyService::Deps Deps(std::function<int64_t()> now_ms) const {
    core::ParleyService::Deps d;
    d.storage = storage.get();
    d.now_ms = std::move(now_ms);
    d.policy = policy.get();
    d.signer = signer.get();
    return d;
  }
};

// Creates an account named `name` (its first device) through the service;
// the caller for it, and its device token in `*token` if given. A failure
// is a test failure (and an empty caller).
inline core::Caller CreateTestAccount(core::ParleyService& service,
                                      const std::string& name,
                                      std::string* token = nullptr) {
  v1::CreateAccountRequest req;
  req.set_username(name);
  req.set_display_name(name);
  auto resp = service.CreateAccount(req);
  EXPECT_TRUE(resp.ok()) << resp.status();
  if (!resp.ok()) return {};
  if (token != nullptr) *token = resp->device_token();
  return core::Caller{resp->account().account_id(), resp->device().device_id()};
}

// `preset`: a builtin policy preset's name (core/presets.h), the policy
// every conversation gets.
inline absl::StatusOr<std::unique_ptr<ServiceParts>> MakeServiceParts(
    const std::string& preset, std::function<int64_t()> now_ms) {
  auto parts = std::make_unique<ServiceParts>();
  char tmpl[] = "/tmp/parley_service_parts.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  parts->dir = tmpl;
  storage::RocksDbOptions ro;
  ro.path = parts->dir + "/db";
  ro.block_cache_bytes = 4 << 20;
  ro.write_buffer_bytes = 2 << 20;
  auto st = storage::OpenRocksDbStorage(ro);
  if (!st.ok()) return st.status();
  parts->storage = *std::move(st);
  const core::BuiltinPreset* p = core::FindPreset(preset);
  if (p == nullptr)
    return absl::NotFoundError(absl::StrCat("no builtin preset ", preset));
  core::PolicyEngine::Options po;
  po.storage = parts->storage.get();
  po.now_ms = std::move(now_ms);
  po.default_content = p->content;
  po.default_file_name = "preset:" + preset;
  auto policy = core::PolicyEngine::Open(po);
  if (!policy.ok()) return policy.status();
  parts->policy = std::move(policy->first);
  auto signer =
      core::StatementSigner::LoadOrCreate(parts->dir + "/statement.key");
  if (!signer.ok()) return signer.status();
  parts->signer = *std::move(signer);
  return parts;
}

}  // namespace parley::testing

#endif  // PARLEY_TESTS_SUPPORT_SERVICE_PARTS_H_
