#include "web/web_request_policy.h"

#include <gtest/gtest.h>

namespace hostvisor::web {
namespace {

constexpr uint16_t kPort = 8423;

class ScreenRequest : public ::testing::Test {
 protected:
  void SetUp() override { token = *tokens.issue(); }
  api::RequestHead head(std::string target = "/v1/vms") {
    api::RequestHead h;
    h.method = "GET";
    h.target = std::move(target);
    h.host = "127.0.0.1:8423";
    h.cookie = token_cookie_name(kPort) + "=" + token;
    return h;
  }
  WebToken tokens;
  std::string token;
};

TEST_F(ScreenRequest, PassesTheConsolesOwnRequestWithTheCookie) {
  EXPECT_EQ(screen_request(head(), kPort, tokens), Screening::kPass);
  auto h = head();
  h.host = "LocalHost:8423";
  h.origin = "http://localhost:8423";
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kPass);
}

TEST_F(ScreenRequest, TakesABearerTokenInsteadOfTheCookie) {
  auto h = head();
  h.cookie.clear();
  h.authorization = "Bearer " + token;
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kPass);
  h.authorization = "bearer  " + token + " ";
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kPass);
  h.authorization = "Basic " + token;
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kNoToken);
}

TEST_F(ScreenRequest, RefusesOtherHostsAgainstDnsRebinding) {
  for (const char* host : {"evil.example:8423", "127.0.0.1:8424", "127.0.0.1", "localhost", "127.0.0.1:8423.evil",
                           "[::1]:8423", "", "127.0.0.2:8423"}) {
    auto h = head();
    h.host = host;
    EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadHost) << host;
  }
  auto h = head();
  h.host.reset();
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadHost);
  h = head();
  h.ambiguous = true;
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadHost);
}

TEST_F(ScreenRequest, RefusesOtherOriginsEvenWithTheToken) {
  for (const char* origin : {"http://evil.example", "http://127.0.0.1:8424", "https://127.0.0.1:8423", "null", "",
                             "http://127.0.0.1:8423/", "http://localhost:8423.evil.example"}) {
    auto h = head();
    h.origin = origin;
    EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadOrigin) << origin;
  }
}

TEST_F(ScreenRequest, PortEightyMayGoWithoutThePort) {
  EXPECT_TRUE(host_allowed("localhost", 80));
  EXPECT_TRUE(origin_allowed("http://127.0.0.1", 80));
  EXPECT_FALSE(host_allowed("localhost", 81));
}

TEST_F(ScreenRequest, WantsTheRightToken) {
  auto h = head();
  h.cookie.clear();
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kNoToken);
  h.cookie = token_cookie_name(kPort) + "=" + std::string(token.size(), '0');
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadToken);
  // Another console's cookie (another port) is not ours.
  h.cookie = token_cookie_name(kPort + 1) + "=" + token;
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kNoToken);
  h.cookie = token_cookie_name(kPort) + "=" + token.substr(1);
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadToken);
}

TEST_F(ScreenRequest, ARevokedTokenFails) {
  tokens.revoke();
  EXPECT_EQ(screen_request(head(), kPort, tokens), Screening::kBadToken);
  const std::string fresh = *tokens.issue();
  EXPECT_NE(fresh, token);
  EXPECT_EQ(screen_request(head(), kPort, tokens), Screening::kBadToken);
}

TEST_F(ScreenRequest, TheFirstVisitEntersWithTheTokenInTheUrl) {
  auto h = head("/?token=" + token);
  h.cookie.clear();
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kEnterWithToken);
  h.target = "/?token=" + std::string(token.size(), 'a');
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kBadToken);
  // Only the page itself takes it from the URL.
  h.target = "/v1/vms?token=" + token;
  EXPECT_EQ(screen_request(h, kPort, tokens), Screening::kNoToken);
}

TEST_F(ScreenRequest, TheTokensOwnControlsAreOnlyOnTheUnixSocket) {
  EXPECT_EQ(screen_request(head("/v1/web"), kPort, tokens), Screening::kUnixOnly);
  EXPECT_EQ(screen_request(head("/v1/web/token"), kPort, tokens), Screening::kUnixOnly);
  EXPECT_EQ(screen_request(head("/v1/webx"), kPort, tokens), Screening::kPass);
}

TEST(CookieValue, FindsTheNamedCookie) {
  EXPECT_EQ(cookie_value("a=1; b=2", "b"), "2");
  EXPECT_EQ(cookie_value("a=1;b=\"two\" ", "b"), "two");
  EXPECT_EQ(cookie_value("ab=1; a=3", "a"), "3");
  EXPECT_EQ(cookie_value("a", "a"), std::nullopt);
  EXPECT_EQ(cookie_value("", "a"), std::nullopt);
  EXPECT_EQ(cookie_value("a=", "a"), "");
}

TEST(QueryValue, FindsTheKey) {
  EXPECT_EQ(query_value("/?token=abc&x=1", "token"), "abc");
  EXPECT_EQ(query_value("/?x=1&token=abc", "token"), "abc");
  EXPECT_EQ(query_value("/?tokens=abc", "token"), std::nullopt);
  EXPECT_EQ(query_value("/token=abc", "token"), std::nullopt);
  EXPECT_EQ(target_path("/a/b?c"), "/a/b");
}

TEST(WebToken, IsLongRandomAndComparedWhole) {
  WebToken a, b;
  EXPECT_FALSE(a.issued());
  EXPECT_FALSE(a.matches(""));
  const std::string ta = *a.issue();
  EXPECT_EQ(ta.size(), WebToken::kHexDigits);  // 256 bits
  EXPECT_EQ(*a.issue(), ta);                   // the same until revoked
  EXPECT_NE(*b.issue(), ta);
  EXPECT_TRUE(a.matches(ta));
  EXPECT_FALSE(a.matches(ta + "0"));
  EXPECT_FALSE(a.matches(ta.substr(0, 63)));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal("ab", "ac"));
}

}  // namespace
}  // namespace hostvisor::web
